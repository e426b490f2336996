package client

import (
	"testing"
	"time"
)

func TestRenewTime(t *testing.T) {
	t.Parallel()
	issued := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	life := 10 * time.Minute
	tests := []struct {
		name             string
		fraction, jitter float64
		r                float64
		want             time.Duration // after issued
	}{
		{name: "no jitter", fraction: 0.66, jitter: 0, r: 0.9, want: 396 * time.Second},
		{name: "smallest draw is fraction minus jitter", fraction: 0.66, jitter: 0.1, r: 0, want: 336 * time.Second},
		{name: "middle draw is the fraction", fraction: 0.66, jitter: 0.1, r: 0.5, want: 396 * time.Second},
		{name: "largest draw approaches fraction plus jitter", fraction: 0.66, jitter: 0.1, r: 0.999999, want: 456 * time.Second},
		{name: "never after expiry", fraction: 0.95, jitter: 0.1, r: 0.999999, want: life},
		{name: "never before issue", fraction: 0.05, jitter: 0.1, r: 0, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := renewTime(issued, issued.Add(life), tt.fraction, tt.jitter, tt.r).Sub(issued)
			if diff := got - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
				t.Errorf("renewTime(%v, %v, r=%v) = +%v, want +%v", tt.fraction, tt.jitter, tt.r, got, tt.want)
			}
		})
	}
}

// RenewTime's random draws stay within fraction ± jitter.
func TestCredential_RenewTime_Bounds(t *testing.T) {
	t.Parallel()
	issued := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	c := Credential{IssuedAt: issued, ExpiresAt: issued.Add(100 * time.Second)}
	lo, hi := issued.Add(56*time.Second), issued.Add(76*time.Second)
	for range 1000 {
		if got := c.RenewTime(0.66, 0.1); got.Before(lo) || got.After(hi) {
			t.Fatalf("RenewTime(0.66, 0.1) = %v, want within [%v, %v]", got, lo, hi)
		}
	}
}
