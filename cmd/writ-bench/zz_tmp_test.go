package main

import (
	"context"
	"testing"
	"time"
)

func TestTmpIdle(t *testing.T) {
	for _, ts := range []bool{false, true} {
		useTimeSleep = ts
		for _, rate := range []float64{50, 100, 500} {
			u0 := sampleUsage(0)
			r := openLoop(context.Background(), "x", loadConfig{Rate: rate, Duration: 3 * time.Second, Timeout: time.Second, MaxInFlight: 1000}, noop)
			u := sampleUsage(0).sub(u0)
			t.Logf("timesleep %v rate %.0f: %v per s, %v per op lag p50 %d", ts, rate, u.CPU/3, u.CPU/time.Duration(r.OK), r.Lag.ValueAtQuantile(50))
		}
	}
}
