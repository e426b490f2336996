package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// median returns the median of xs (NaN if empty). It does not modify xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratioCI is the ratio of the medians of num and den, with a 95% percentile
// bootstrap interval over blocks.
type ratioCI struct {
	Ratio, Lo, Hi float64
	OK            bool
}

// bootstrapIters is the number of bootstrap resamples.
const bootstrapIters = 2000

// ratioOfMedians resamples the blocks of each variant independently with
// replacement. With five blocks per variant the interval is coarse; it
// says how much the blocks disagree, not more. The generator is seeded so
// a report is reproducible from the same numbers.
func ratioOfMedians(num, den []float64) ratioCI {
	if len(num) == 0 || len(den) == 0 || median(den) == 0 {
		return ratioCI{}
	}
	r := ratioCI{Ratio: median(num) / median(den), OK: true}
	rng := rand.New(rand.NewPCG(1, 2))
	ratios := make([]float64, 0, bootstrapIters)
	a, b := make([]float64, len(num)), make([]float64, len(den))
	for range bootstrapIters {
		for i := range a {
			a[i] = num[rng.IntN(len(num))]
		}
		for i := range b {
			b[i] = den[rng.IntN(len(den))]
		}
		if m := median(b); m != 0 {
			ratios = append(ratios, median(a)/m)
		}
	}
	slices.Sort(ratios)
	r.Lo = ratios[int(0.025*float64(len(ratios)))]
	r.Hi = ratios[min(int(0.975*float64(len(ratios))), len(ratios)-1)]
	return r
}

func (r ratioCI) String() string {
	if !r.OK {
		return "–"
	}
	return fmt.Sprintf("**%.2f×** (%.2f–%.2f)", r.Ratio, r.Lo, r.Hi)
}

// usDur converts microseconds to a Duration.
func usDur(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// fmtUS formats a latency given in microseconds.
func fmtUS(us int64) string { return fmtDur(usDur(us)) }

// fmtDur formats d with three significant digits in µs, ms or s.
func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "n/a"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + " ms"
	default:
		return sig3(d.Seconds()) + " s"
	}
}

// sig3 formats x with about three significant digits.
func sig3(x float64) string {
	switch ax := math.Abs(x); {
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}
