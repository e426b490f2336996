package revoke

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	highest := func(n int64) int64 { return n - 1 }
	lowest := func(int64) int64 { return 0 }
	tests := []struct {
		name     string
		attempts int
		base     time.Duration
		max      time.Duration
		randN    func(int64) int64
		want     time.Duration
	}{
		{"first retry is at most base", 1, time.Second, 5 * time.Minute, highest, time.Second},
		{"doubles per attempt", 2, time.Second, 5 * time.Minute, highest, 2 * time.Second},
		{"doubles again", 4, time.Second, 5 * time.Minute, highest, 8 * time.Second},
		{"capped at max", 10, time.Second, 5 * time.Minute, highest, 5 * time.Minute},
		{"huge attempt counts do not overflow", 1 << 20, time.Second, 5 * time.Minute, highest, 5 * time.Minute},
		{"max near the int64 limit does not overflow", 70, time.Second, time.Duration(1<<63 - 1), highest, time.Duration(1<<63 - 2)},
		{"full jitter reaches zero", 5, time.Second, 5 * time.Minute, lowest, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := backoff(tt.attempts, tt.base, tt.max, tt.randN); got != tt.want {
				t.Errorf("backoff(%d, %v, %v) = %v, want %v", tt.attempts, tt.base, tt.max, got, tt.want)
			}
		})
	}
}

// TestBackoff_Jitter checks, with the real random source, that delays
// spread over [0, cap].
func TestBackoff_Jitter(t *testing.T) {
	t.Parallel()
	const bound = 4 * time.Second // third attempt, base 1s
	lo, hi := bound, time.Duration(0)
	for range 1000 {
		d := backoff(3, time.Second, 5*time.Minute, rand.Int64N)
		if d < 0 || d > bound {
			t.Fatalf("backoff(3, 1s, 5m) = %v, want within [0, %v]", d, bound)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo > bound/4 || hi < bound*3/4 {
		t.Errorf("1000 delays span [%v, %v], want them spread over [0, %v]", lo, hi, bound)
	}
}
