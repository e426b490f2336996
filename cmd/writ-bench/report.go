package main

import (
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

// section is a generated part of the report, replaced as a whole on rerun.
type section struct {
	ID   string
	Body string
}

func beginMarker(id string) string { return "<!-- writ-bench:begin " + id + " -->" }
func endMarker(id string) string   { return "<!-- writ-bench:end " + id + " -->" }

// replaceSections replaces each section's marked region in doc, or appends
// the section if doc has none. Text outside the markers is kept.
func replaceSections(doc string, secs []section) string {
	for _, s := range secs {
		block := beginMarker(s.ID) + "\n" + strings.TrimRight(s.Body, "\n") + "\n" + endMarker(s.ID)
		i := strings.Index(doc, beginMarker(s.ID))
		j := strings.Index(doc, endMarker(s.ID))
		if i >= 0 && j > i {
			doc = doc[:i] + block + doc[j+len(endMarker(s.ID)):]
			continue
		}
		if doc != "" && !strings.HasSuffix(doc, "\n\n") {
			doc = strings.TrimRight(doc, "\n") + "\n\n"
		}
		doc += block + "\n"
	}
	return doc
}

// writeReport updates path with secs, creating it if needed.
func writeReport(path string, secs []section) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	if doc == "" {
		doc = "# Benchmarks\n\n"
	}
	return os.WriteFile(path, []byte(replaceSections(doc, secs)), 0o644)
}

// renderEnvironment is the environment table.
func renderEnvironment(e environment) string {
	var b strings.Builder
	b.WriteString("### Environment of the last run\n\n| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("date", e.Date.Format(time.RFC3339))
	row("command", "`"+e.Command+"`")
	row("go version", e.GoVersion)
	row("GOMAXPROCS / NumCPU", fmt.Sprintf("%d / %d (not pinned; client, broker and Vault share them)", e.GOMAXPROCS, e.NumCPU))
	row("CPU", e.CPUModel)
	row("CPU quota", e.CPUQuota)
	row("kernel", e.Kernel)
	row("data dir filesystem", e.FS)
	row("fsync at start", fsyncCell(e.Fsync))
	row("Vault", e.Vault)
	row("load average at start (1/5/15 min)", e.LoadAvg)
	return b.String()
}

func fsyncCell(f fsyncResult) string {
	if f.Fsync == nil || f.Fsync.TotalCount() == 0 {
		return "not measured"
	}
	return fmt.Sprintf("fsync p50 %s, p99 %s; fdatasync p50 %s, p99 %s (4 KiB pwrite + sync, %d samples each)",
		fmtUS(f.Fsync.ValueAtQuantile(50)), fmtUS(f.Fsync.ValueAtQuantile(99)),
		fmtUS(f.Fdatasync.ValueAtQuantile(50)), fmtUS(f.Fdatasync.ValueAtQuantile(99)), f.Samples)
}

// renderFsync is the fsync baseline section.
func renderFsync(f fsyncResult, e environment) string {
	var b strings.Builder
	b.WriteString("### fsync baseline\n\n")
	fmt.Fprintf(&b, "A 4 KiB `pwrite` into a preallocated 1 MiB file followed by `fsync` (or `fdatasync`, which bbolt uses), alternating, in the data directory (%s). Run: %s, `%s`.\n\n",
		e.FS, e.Date.Format(time.RFC3339), e.Command)
	b.WriteString("| call | samples | p50 | p90 | p99 | p99.9 | max | serial bound 1/p50 |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range []struct {
		name string
		h    interface {
			ValueAtQuantile(float64) int64
			Max() int64
			TotalCount() int64
		}
	}{{"write + fsync", f.Fsync}, {"write + fdatasync", f.Fdatasync}} {
		p50 := r.h.ValueAtQuantile(50)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s/s |\n", r.name, r.h.TotalCount(),
			fmtUS(p50), fmtUS(r.h.ValueAtQuantile(90)), fmtUS(r.h.ValueAtQuantile(99)),
			fmtUS(r.h.ValueAtQuantile(99.9)), fmtUS(r.h.Max()), fmtRate(1e6/float64(max(p50, 1))))
	}
	return b.String()
}

// renderScenario is a scenario's section.
func renderScenario(r *scenarioResult, rc runConfig, e environment) string {
	sc := r.Sc
	var b strings.Builder
	fmt.Fprintf(&b, "### %s — %s\n\n", sc.ID, sc.Title)
	fmt.Fprintf(&b, "- **A `%s`**: %s.\n- **B `%s`**: %s.\n", sc.A.Name, sc.A.Desc, sc.B.Name, sc.B.Desc)
	fmt.Fprintf(&b, "- Ratios are **%s** (median of the per-block values of one over the other; in parentheses a 95%% bootstrap interval over blocks).\n", sc.RatioName)
	fmt.Fprintf(&b, "- Run %s, took %s, load average %s at the start and %s at the end (%d CPUs): `%s`.\n",
		r.Start.UTC().Format(time.RFC3339), r.End.Sub(r.Start).Round(time.Second), r.LoadStart, r.LoadEnd, e.NumCPU, e.Command)
	fmt.Fprintf(&b, "- Measured just before: %s.\n\n", fsyncCell(r.Fsync))

	numIdx, denIdx := 0, 1
	if !sc.NumIsA {
		numIdx, denIdx = 1, 0
	}
	names := [2]string{sc.A.Name, sc.B.Name}
	peer := sc.A.PeerPID > 0 || sc.B.PeerPID > 0

	if len(r.Probe[0]) > 0 {
		fmt.Fprintf(&b, "**Closed-loop maximum** (%d workers, %d × %s per variant, interleaved; the open-loop loads below are fractions of the slower variant's %s/s)\n\n",
			rc.Concurrency, len(r.Probe[0]), rc.Probe, fmtRate(r.RefMax))
		b.WriteString("| variant | grants/s (median) | min–max | CPU-µs/grant |")
		if peer {
			b.WriteString(" Vault CPU-µs/grant |")
		}
		b.WriteString(" fsyncs/grant | errors |\n|---|---|---|---|")
		if peer {
			b.WriteString("---|")
		}
		b.WriteString("---|---|\n")
		for i, bs := range r.Probe {
			ach := achievedOf(bs)
			lo, hi := minMax(ach)
			fmt.Fprintf(&b, "| %s | %s | %s–%s | %s |", names[i], fmtRate(median(ach)), fmtRate(lo), fmtRate(hi), fmtMedian(stats(bs, cpuPerGrant), 0))
			if peer {
				fmt.Fprintf(&b, " %s |", fmtMedian(stats(bs, peerCPUPerGrant), 0))
			}
			fmt.Fprintf(&b, " %s | %s |\n", fmtMedian(stats(bs, fsyncsPerGrant), 2), fmtErrors(bs))
		}
		fmt.Fprintf(&b, "| **%s** | %s | | %s |", sc.RatioName,
			ratioOfMedians(achievedOf(r.Probe[numIdx]), achievedOf(r.Probe[denIdx])),
			ratioOfMedians(stats(r.Probe[numIdx], cpuPerGrant), stats(r.Probe[denIdx], cpuPerGrant)))
		if peer {
			b.WriteString(" |")
		}
		b.WriteString(" | |\n\n")
	}

	fmt.Fprintf(&b, "**Open loop** (constant arrival rate; medians over %d blocks of %s per variant and load, run A B A B …; latency is from each request's intended start, so queueing is counted; the *generator only* row is one block of the same schedule with requests that do nothing, i.e. the tool's own CPU and lag)\n\n", rc.Blocks, rc.Block)
	b.WriteString("| load | offered/s | variant | achieved/s | p50 | p90 | p99 | p99.9 | max | errors | CPU-µs/grant |")
	if peer {
		b.WriteString(" Vault CPU-µs/grant |")
	}
	b.WriteString(" fsyncs/grant | KiB written/grant | generator lag p99 |\n|---|---|---|---|---|---|---|---|---|---|---|")
	if peer {
		b.WriteString("---|")
	}
	b.WriteString("---|---|---|\n")
	for _, lv := range r.Levels {
		fmt.Fprintf(&b, "| %s | %s | *generator only* | %s | | | | | | | %s |", fmtLoad(lv.Fraction), fmtRate(lv.Rate),
			fmtRate(lv.Idle.achieved()), fmtMedian(stats([]blockResult{lv.Idle}, cpuPerGrant), 0))
		if peer {
			b.WriteString(" |")
		}
		fmt.Fprintf(&b, " | | %s |\n", fmtMedianUS(stats([]blockResult{lv.Idle}, lagP99)))
		for i, bs := range lv.Blocks {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |",
				fmtLoad(lv.Fraction), fmtRate(lv.Rate), names[i], fmtRate(median(achievedOf(bs))),
				fmtMedianUS(stats(bs, quantile(50))), fmtMedianUS(stats(bs, quantile(90))),
				fmtMedianUS(stats(bs, quantile(99))), fmtMedianUS(stats(bs, quantile(99.9))),
				fmtUS(maxLatency(bs)), fmtErrors(bs), fmtMedian(stats(bs, cpuPerGrant), 0))
			if peer {
				fmt.Fprintf(&b, " %s |", fmtMedian(stats(bs, peerCPUPerGrant), 0))
			}
			fmt.Fprintf(&b, " %s | %s | %s |\n", fmtMedian(stats(bs, fsyncsPerGrant), 2),
				fmtMedian(stats(bs, kibPerGrant), 1), fmtMedianUS(stats(bs, lagP99)))
		}
	}

	fmt.Fprintf(&b, "\n**Ratios %s** at each load\n\n", sc.RatioName)
	b.WriteString("| load | offered/s | p50 | p99 | Δp50 | Δp99 | achieved/s | CPU/grant |\n|---|---|---|---|---|---|---|---|\n")
	for _, lv := range r.Levels {
		num, den := lv.Blocks[numIdx], lv.Blocks[denIdx]
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", fmtLoad(lv.Fraction), fmtRate(lv.Rate),
			ratioOfMedians(stats(num, quantile(50)), stats(den, quantile(50))),
			ratioOfMedians(stats(num, quantile(99)), stats(den, quantile(99))),
			fmtDelta(stats(num, quantile(50)), stats(den, quantile(50))),
			fmtDelta(stats(num, quantile(99)), stats(den, quantile(99))),
			ratioOfMedians(achievedOf(num), achievedOf(den)),
			ratioOfMedians(stats(num, cpuPerGrant), stats(den, cpuPerGrant)))
	}

	b.WriteString("\n**Largest measured load meeting the SLO** (median p99 < 50 ms and error rate < 0.1%): ")
	for i, name := range names {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "`%s` — %s", name, sloRate(r.Levels, i))
	}
	b.WriteString(".\n")

	if sc.Durable && r.Fsync.Fsync != nil && r.Fsync.Fsync.TotalCount() > 0 {
		b.WriteString("\n" + renderNormalised(r) + "\n")
	}
	if len(sc.Notes) > 0 || len(r.After) > 0 || r.PerfNote != "" {
		b.WriteString("\nNotes:\n\n")
		for _, n := range append(append([]string{}, sc.Notes...), r.After...) {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if r.PerfNote != "" {
			fmt.Fprintf(&b, "- %s\n", r.PerfNote)
		}
		for i, name := range names {
			if txt := firstError(r, i); txt != "" {
				fmt.Fprintf(&b, "- A `%s` error, for example: `%s`\n", name, truncateText(txt, 200))
			}
		}
	}
	return b.String()
}

// renderNormalised relates variant A's durable results to the measured
// fdatasync latency.
func renderNormalised(r *scenarioResult) string {
	t := usDur(r.Fsync.Fdatasync.ValueAtQuantile(50))
	serial := float64(time.Second) / float64(2*t)
	var b strings.Builder
	fmt.Fprintf(&b, "**Normalised to the disk** (A `%s`; fdatasync p50 t = %s; a bbolt commit calls fdatasync twice, so a strictly serial durable ledger manages at most 1/(2t) ≈ %s commits/s):", r.Sc.A.Name, fmtDur(t), fmtRate(serial))
	if len(r.Probe[0]) > 0 {
		mx := median(achievedOf(r.Probe[0]))
		fmt.Fprintf(&b, " closed-loop maximum %s grants/s = %.1f × that bound, with %s fsyncs per grant (group commit);", fmtRate(mx), mx/serial, fmtMedian(stats(r.Probe[0], fsyncsPerGrant), 2))
	}
	for _, lv := range r.Levels {
		p50 := median(stats(lv.Blocks[0], quantile(50)))
		if math.IsNaN(p50) {
			continue
		}
		fmt.Fprintf(&b, " p50 at %s = %.1f t;", fmtLoad(lv.Fraction), p50/float64(t.Microseconds()))
	}
	return strings.TrimSuffix(b.String(), ";") + "."
}

// Per-block statistics; -1 means unavailable.
func cpuPerGrant(b blockResult) float64 { return usPer(b.Usage.CPU, b.OK) }

func peerCPUPerGrant(b blockResult) float64 { return usPer(b.Usage.PeerCPU, b.OK) }

func fsyncsPerGrant(b blockResult) float64 { return countPer(b.Usage.Fsyncs, b.OK) }

func kibPerGrant(b blockResult) float64 {
	if b.Usage.WriteBytes < 0 {
		return -1
	}
	return countPer(b.Usage.WriteBytes, b.OK) / 1024
}

func lagP99(b blockResult) float64 {
	if b.Lag.TotalCount() == 0 {
		return -1
	}
	return float64(b.Lag.ValueAtQuantile(99))
}

func usPer(d time.Duration, n int64) float64 {
	if d < 0 || n <= 0 {
		return -1
	}
	return float64(d.Microseconds()) / float64(n)
}

func countPer(c, n int64) float64 {
	if c < 0 || n <= 0 {
		return -1
	}
	return float64(c) / float64(n)
}

// sloRate is the largest offered load at which variant i met the SLO.
func sloRate(levels []levelResult, i int) string {
	best := ""
	for _, lv := range levels {
		bs := lv.Blocks[i]
		if median(stats(bs, quantile(99))) < 50_000 && errRate(bs) < 0.001 {
			best = fmtRate(lv.Rate) + "/s"
		}
	}
	if best == "" {
		return "none of the loads measured"
	}
	return best
}

// errRate is the error rate over all blocks.
func errRate(bs []blockResult) float64 {
	var errs, started int64
	for _, b := range bs {
		errs += b.Errors
		started += b.Started
	}
	if started == 0 {
		return 0
	}
	return float64(errs) / float64(started)
}

func fmtErrors(bs []blockResult) string {
	var errs int64
	for _, b := range bs {
		errs += b.Errors
	}
	if errs == 0 {
		return "0"
	}
	return fmt.Sprintf("%.2f%% (%d)", 100*errRate(bs), errs)
}

func firstError(r *scenarioResult, i int) string {
	for _, bs := range [][]blockResult{r.Probe[i]} {
		for _, b := range bs {
			if b.ErrText != "" {
				return b.ErrText
			}
		}
	}
	for _, lv := range r.Levels {
		for _, b := range lv.Blocks[i] {
			if b.ErrText != "" {
				return b.ErrText
			}
		}
	}
	return ""
}

func fmtLoad(f float64) string {
	if f == 0 {
		return "fixed"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func fmtRate(x float64) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", x)
}

func fmtMedian(xs []float64, decimals int) string {
	m := median(xs)
	if math.IsNaN(m) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", decimals, m)
}

func fmtMedianUS(xs []float64) string {
	m := median(xs)
	if math.IsNaN(m) {
		return "n/a"
	}
	return fmtUS(int64(m))
}

// fmtDelta is median(num) − median(den) for latencies in µs.
func fmtDelta(num, den []float64) string {
	d := median(num) - median(den)
	if math.IsNaN(d) {
		return "n/a"
	}
	if d < 0 {
		return "−" + fmtUS(int64(-d))
	}
	return "+" + fmtUS(int64(d))
}

func minMax(xs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func truncateText(s string, n int) string {
	s = strings.ReplaceAll(s, "`", "'")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
