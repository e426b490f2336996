package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"
)

// variant is one side of an A/B comparison.
type variant struct {
	// Name is a short label, e.g. "durable".
	Name string
	// Desc says what the variant does, for the report.
	Desc string
	// Op performs one grant.
	Op Op
	// PeerPID, if positive, is a helper process (Vault) whose CPU time is
	// reported per grant too.
	PeerPID int
}

// scenario is an A/B comparison run in interleaved blocks.
type scenario struct {
	// ID is the performance.md row, e.g. "R2"; Name selects it on the
	// command line and marks its section in the report.
	ID, Name, Title string
	A, B            variant
	// RatioName names the reported ratio, e.g. "durable / none";
	// NumIsA says whether A is its numerator.
	RatioName string
	NumIsA    bool
	// Durable is set when A's results depend on fsync latency.
	Durable bool
	// Notes are printed under the tables.
	Notes []string
	// After runs once the blocks are done, e.g. to verify the ledger, and
	// returns lines for the report.
	After func(ctx context.Context) []string
	// Close releases the scenario's servers.
	Close func() error
}

// runConfig is how each scenario is run.
type runConfig struct {
	Rate        float64   // fixed offered load; 0 means probe and use Loads
	Loads       []float64 // fractions of the probed maximum
	Block       time.Duration
	Blocks      int // per variant and load
	Probe       time.Duration
	ProbeReps   int // closed-loop probes per variant, interleaved
	Concurrency int // closed-loop workers
	Warmup      time.Duration
	Timeout     time.Duration
	MaxInFlight int
	Perf        bool // count fsyncs with perf
	Dir         string
	Progress    io.Writer
}

// levelResult is every block at one offered load.
type levelResult struct {
	Fraction float64 // of RefMax; 0 when the rate was given
	Rate     float64
	Blocks   [2][]blockResult // [0] is A, [1] is B, in run order
	// Idle is the generator alone at Rate with an Op that does nothing:
	// the CPU and schedule lag that are the tool's own.
	Idle blockResult
}

// scenarioResult is everything a scenario measured.
type scenarioResult struct {
	Sc         *scenario
	Fsync      fsyncResult
	Probe      [2][]blockResult
	RefMax     float64 // the slower variant's closed-loop maximum
	Levels     []levelResult
	After      []string
	Start, End time.Time
	// LoadStart and LoadEnd are the 1/5/15-minute load averages around
	// the run: other work on the machine.
	LoadStart, LoadEnd string
	PerfNote           string // why fsyncs were not counted, if they were not
}

// runner runs scenarios and remembers whether perf works.
type runner struct {
	cfg      runConfig
	perf     bool
	perfNote string
}

func newRunner(cfg runConfig) *runner {
	r := &runner{cfg: cfg, perf: cfg.Perf}
	if !cfg.Perf {
		r.perfNote = "fsync counting disabled (-perf=false)"
	}
	return r
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// run measures sc: the fsync baseline, a warm-up, closed-loop probes of
// both variants and, at each offered load, Blocks open-loop blocks per
// variant in the order A B A B …
func (r *runner) run(ctx context.Context, sc *scenario) (*scenarioResult, error) {
	res := &scenarioResult{Sc: sc, Start: time.Now(), LoadStart: loadAvg()}
	var err error
	if res.Fsync, err = measureFsync(ctx, r.cfg.Dir, 1000, 3*time.Second); err != nil {
		return nil, err
	}
	r.logf("%s %s: %s", sc.ID, sc.Name, res.Fsync)
	vs := [2]variant{sc.A, sc.B}
	warm := loadConfig{Concurrency: 8, Duration: r.cfg.Warmup, Timeout: r.cfg.Timeout}
	for _, v := range vs {
		w := closedLoop(ctx, v.Name, warm, v.Op)
		r.logf("%s warm-up %s: %d ok, %d errors %s", sc.ID, v.Name, w.OK, w.Errors, w.ErrText)
	}

	rates := []float64{r.cfg.Rate}
	fractions := []float64{0}
	if r.cfg.Rate == 0 {
		probe := loadConfig{Concurrency: r.cfg.Concurrency, Duration: r.cfg.Probe, Timeout: r.cfg.Timeout}
		for rep := range r.cfg.ProbeReps {
			for i, v := range vs {
				b := r.measure(v, func() blockResult { return closedLoop(ctx, v.Name, probe, v.Op) })
				res.Probe[i] = append(res.Probe[i], b)
				r.logf("%s probe %d/%d %s: %.0f grants/s (%d errors) cpu %s/grant", sc.ID, rep+1, r.cfg.ProbeReps, v.Name, b.achieved(), b.Errors, fmtDur(perGrant(b.Usage.CPU, b.OK)))
			}
		}
		res.RefMax = min(median(achievedOf(res.Probe[0])), median(achievedOf(res.Probe[1])))
		if !(res.RefMax >= 1) {
			return nil, fmt.Errorf("%s: closed-loop probe found no throughput (errors: %q, %q)", sc.ID, res.Probe[0][0].ErrText, res.Probe[1][0].ErrText)
		}
		rates, fractions = nil, r.cfg.Loads
		for _, f := range fractions {
			rates = append(rates, f*res.RefMax)
		}
	}

	for li, rate := range rates {
		lv := levelResult{Fraction: fractions[li], Rate: rate}
		load := loadConfig{Rate: rate, Duration: r.cfg.Block, Timeout: r.cfg.Timeout, MaxInFlight: r.cfg.MaxInFlight}
		idle := load
		idle.Duration = min(r.cfg.Block, 2*time.Second)
		lv.Idle = r.measure(variant{Name: "generator"}, func() blockResult { return openLoop(ctx, "generator", idle, noop) })
		for blk := range r.cfg.Blocks {
			for i, v := range vs {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				b := r.measure(v, func() blockResult { return openLoop(ctx, v.Name, load, v.Op) })
				lv.Blocks[i] = append(lv.Blocks[i], b)
				r.logf("%s %.0f/s block %d/%d %-9s achieved %.0f/s p50 %s p99 %s err %d cpu %s/grant fsync/grant %s",
					sc.ID, rate, blk+1, r.cfg.Blocks, v.Name, b.achieved(),
					fmtUS(b.Latency.ValueAtQuantile(50)), fmtUS(b.Latency.ValueAtQuantile(99)),
					b.Errors, fmtDur(perGrant(b.Usage.CPU, b.OK)), fmtRatio(b.Usage.Fsyncs, b.OK))
			}
		}
		res.Levels = append(res.Levels, lv)
	}
	if sc.After != nil {
		res.After = sc.After(ctx)
	}
	res.End, res.LoadEnd = time.Now(), loadAvg()
	res.PerfNote = r.perfNote
	return res, nil
}

// noop is the Op of the generator-only calibration block.
func noop(context.Context) error { return nil }

// measure runs one block and attaches the process counters taken around it.
func (r *runner) measure(v variant, block func() blockResult) blockResult {
	runtime.GC() // start every block from a collected heap
	var fc *fsyncCounter
	if r.perf {
		var err error
		if fc, err = startFsyncCounter(); err != nil {
			r.perf, r.perfNote = false, "fsyncs not counted: "+err.Error()
			r.logf("%s", r.perfNote)
		}
	}
	u0 := sampleUsage(v.PeerPID)
	res := block()
	res.Usage = sampleUsage(v.PeerPID).sub(u0)
	if fc != nil {
		n, err := fc.Stop()
		if err != nil {
			r.perf, r.perfNote = false, "fsyncs not counted: "+err.Error()
			r.logf("%s", r.perfNote)
		}
		res.Usage.Fsyncs = n
	}
	return res
}

func achievedOf(bs []blockResult) []float64 {
	out := make([]float64, len(bs))
	for i, b := range bs {
		out[i] = b.achieved()
	}
	return out
}

// perGrant divides a duration by a count, or returns -1.
func perGrant(d time.Duration, n int64) time.Duration {
	if d < 0 || n <= 0 {
		return -1
	}
	return d / time.Duration(n)
}

// fmtRatio formats n/d with two decimals, or "n/a".
func fmtRatio(n, d int64) string {
	if n < 0 || d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(n)/float64(d))
}

// blockStat extracts one number from a block.
type blockStat func(b blockResult) float64

// stats applies f to each block.
func stats(bs []blockResult, f blockStat) []float64 {
	out := make([]float64, 0, len(bs))
	for _, b := range bs {
		if v := f(b); v >= 0 {
			out = append(out, v)
		}
	}
	return out
}

// quantile returns a blockStat of a latency percentile in µs.
func quantile(q float64) blockStat {
	return func(b blockResult) float64 {
		if b.Latency.TotalCount() == 0 {
			return -1
		}
		return float64(b.Latency.ValueAtQuantile(q))
	}
}

// maxLatency is the largest latency over all blocks, in µs.
func maxLatency(bs []blockResult) int64 {
	return slices.Max(append(stats64(bs, func(b blockResult) int64 { return b.Latency.Max() }), 0))
}

func stats64(bs []blockResult, f func(blockResult) int64) []int64 {
	out := make([]int64, len(bs))
	for i, b := range bs {
		out[i] = f(b)
	}
	return out
}
