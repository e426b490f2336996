package main

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Op performs one grant and reports whether it failed. It must honour ctx.
type Op func(ctx context.Context) error

// Histogram bounds, in microseconds: 1 µs to 2 min, 3 significant digits.
const (
	histMin     = 1
	histMax     = 120_000_000
	histSigFigs = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSigFigs) }

// loadConfig describes one measured block.
type loadConfig struct {
	// Rate is the offered load in grants/s (open loop only).
	Rate float64
	// Concurrency is the number of workers (closed loop only).
	Concurrency int
	// Duration is how long requests are started for.
	Duration time.Duration
	// Timeout bounds each request.
	Timeout time.Duration
	// MaxInFlight caps outstanding requests in open loop; a start that
	// would exceed it is shed and counted as an error, never delayed.
	MaxInFlight int
}

// blockResult is what one block measured. Latencies are in microseconds.
type blockResult struct {
	Variant string
	Offered float64 // grants/s; 0 for closed loop
	Window  time.Duration

	Started  int64 // requests started (or shed)
	OK       int64 // succeeded, whenever they finished
	Errors   int64 // failed, timed out or shed
	Shed     int64 // of Errors: not started because MaxInFlight was reached
	InWindow int64 // succeeded before the window closed

	Latency *hdrhistogram.Histogram // successful requests, from intended start
	Lag     *hdrhistogram.Histogram // intended start to actual start
	ErrText string                  // one error, as a sample

	Usage usage // process counters over the block, including drain
}

// achieved is the rate of successful grants completed inside the window.
func (r blockResult) achieved() float64 { return float64(r.InWindow) / r.Window.Seconds() }

// recorder collects outcomes from concurrent requests.
type recorder struct {
	mu       sync.Mutex
	res      blockResult
	windowAt time.Time
}

func newRecorder(variant string, offered float64, window time.Duration) *recorder {
	return &recorder{res: blockResult{Variant: variant, Offered: offered, Window: window, Latency: newHist(), Lag: newHist()}}
}

func (r *recorder) record(intended, started, done time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Started++
	_ = r.res.Lag.RecordValue(max(started.Sub(intended).Microseconds(), histMin))
	if err != nil {
		r.res.Errors++
		if r.res.ErrText == "" {
			r.res.ErrText = err.Error()
		}
		return
	}
	r.res.OK++
	if !done.After(r.windowAt) {
		r.res.InWindow++
	}
	_ = r.res.Latency.RecordValue(min(max(done.Sub(intended).Microseconds(), histMin), histMax))
}

func (r *recorder) shed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Started++
	r.res.Errors++
	r.res.Shed++
	if r.res.ErrText == "" {
		r.res.ErrText = "shed by the generator: too many requests in flight"
	}
}

// openLoop starts requests at a constant rate for cfg.Duration, whether or
// not earlier ones have finished, and waits for the last to finish. Latency
// is measured from each request's intended start on the schedule, so a
// stalled server or a late generator shows up as latency (no coordinated
// omission). The schedule is kept by one goroutine locked to an OS thread
// that sleeps with nanosleep, which on Linux overshoots by about 0.1 ms
// instead of the runtime timer's 1 ms for short sleeps.
func openLoop(ctx context.Context, variant string, cfg loadConfig, op Op) blockResult {
	interval := float64(time.Second) / cfg.Rate
	start := time.Now().Add(time.Millisecond)
	end := start.Add(cfg.Duration)
	rec := newRecorder(variant, cfg.Rate, cfg.Duration)
	rec.windowAt = end

	var (
		wg       sync.WaitGroup
		inFlight atomic.Int64
	)
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for i := 0; ; i++ {
			intended := start.Add(time.Duration(float64(i) * interval))
			if !intended.Before(end) || ctx.Err() != nil {
				return
			}
			if d := time.Until(intended); d > 0 {
				sleep(d)
			}
			if cfg.MaxInFlight > 0 && inFlight.Load() >= int64(cfg.MaxInFlight) {
				rec.shed()
				continue
			}
			inFlight.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer inFlight.Add(-1)
				started := time.Now()
				rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				err := op(rctx)
				cancel()
				rec.record(intended, started, time.Now(), err)
			}()
		}
	}()
	<-dispatched
	wg.Wait()
	return rec.res
}

// closedLoop runs cfg.Concurrency workers that each start a new request as
// soon as the previous one finishes, for cfg.Duration. It measures the
// maximum throughput; its latencies are from the actual start and suffer
// from coordinated omission, so only its rate is reported.
func closedLoop(ctx context.Context, variant string, cfg loadConfig, op Op) blockResult {
	start := time.Now()
	end := start.Add(cfg.Duration)
	rec := newRecorder(variant, 0, cfg.Duration)
	rec.windowAt = end
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				started := time.Now()
				rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				err := op(rctx)
				cancel()
				rec.record(started, started, time.Now(), err)
			}
		}()
	}
	wg.Wait()
	return rec.res
}
