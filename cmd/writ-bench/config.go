package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config is the command line.
type config struct {
	Scenarios   []string
	Rate        float64
	Loads       []float64
	Block       time.Duration
	Blocks      int
	Probe       time.Duration
	ProbeReps   int
	Concurrency int
	Warmup      time.Duration
	Timeout     time.Duration
	MaxInFlight int
	Out         string
	Vault       string
	Dir         string
	Perf        bool
	Keep        bool
	CPUProfile  string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var (
		c                config
		scenarios, loads string
	)
	fs := flag.NewFlagSet("writ-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&scenarios, "scenario", "all", "comma-separated: fsync, ledger (R2), connection (R5), vault (R1), checkpoints (L1), checkpoints-fast (L2), or all")
	fs.Float64Var(&c.Rate, "rate", 0, "offered load in grants/s; 0 probes the closed-loop maximum and runs at -loads of it")
	fs.StringVar(&loads, "loads", "25,50,75,90", "offered loads, in percent of the slower variant's closed-loop maximum")
	fs.DurationVar(&c.Block, "block", 10*time.Second, "length of one open-loop block")
	fs.IntVar(&c.Blocks, "blocks", 5, "blocks per variant and load, interleaved A B A B …")
	fs.DurationVar(&c.Probe, "probe", 3*time.Second, "length of one closed-loop probe")
	fs.IntVar(&c.ProbeReps, "probe-reps", 3, "closed-loop probes per variant, interleaved")
	fs.IntVar(&c.Concurrency, "concurrency", 64, "closed-loop probe workers")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "closed-loop warm-up per variant before measuring")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "deadline of each request")
	fs.IntVar(&c.MaxInFlight, "max-inflight", 10000, "open-loop requests outstanding before new ones are shed (and counted as errors)")
	fs.StringVar(&c.Out, "out", "docs/BENCHMARKS.md", "markdown file to update with the results; empty to only print them")
	fs.StringVar(&c.Vault, "vault", "", "path of a vault binary; enables the vault scenario")
	fs.StringVar(&c.Dir, "dir", "", "parent of the temporary data directory (default: the system temp dir); its filesystem is what fsync measures")
	fs.BoolVar(&c.Perf, "perf", true, "count fsyncs per grant with 'perf stat' on syscall tracepoints, when perf is available")
	fs.BoolVar(&c.Keep, "keep", false, "keep the data directory")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run (both variants, client and broker) to this file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var err error
	if c.Scenarios, err = parseScenarios(scenarios, c.Vault != ""); err != nil {
		return c, err
	}
	if c.Loads, err = parseLoads(loads); err != nil {
		return c, err
	}
	switch {
	case c.Rate < 0:
		return c, errors.New("-rate must not be negative")
	case c.Block <= 0 || c.Probe <= 0 || c.Timeout <= 0 || c.Warmup < 0:
		return c, errors.New("-block, -probe and -timeout must be positive")
	case c.Blocks < 1 || c.ProbeReps < 1 || c.Concurrency < 1 || c.MaxInFlight < 1:
		return c, errors.New("-blocks, -probe-reps, -concurrency and -max-inflight must be at least 1")
	}
	if c.Vault != "" {
		if c.Vault, err = expandHome(c.Vault); err != nil {
			return c, err
		}
	}
	return c, nil
}

// parseScenarios resolves names and aliases; "all" includes vault only
// when a Vault binary is given.
func parseScenarios(s string, haveVault bool) ([]string, error) {
	var out []string
	for name := range strings.SplitSeq(strings.ToLower(s), ",") {
		name = strings.TrimSpace(name)
		if a, ok := scenarioAliases[name]; ok {
			name = a
		}
		switch {
		case name == "all":
			for _, n := range scenarioOrder {
				if n != scenarioVault || haveVault {
					out = append(out, n)
				}
			}
		case slices.Contains(scenarioOrder, name):
			if name == scenarioVault && !haveVault {
				return nil, errors.New("the vault scenario needs -vault PATH")
			}
			out = append(out, name)
		default:
			return nil, fmt.Errorf("unknown scenario %q (want %s or all)", name, strings.Join(scenarioOrder, ", "))
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return slices.Index(scenarioOrder, a) - slices.Index(scenarioOrder, b) })
	return slices.Compact(out), nil
}

func parseLoads(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || p <= 0 || p > 1000 {
			return nil, fmt.Errorf("-loads: %q is not a percentage", f)
		}
		out = append(out, p/100)
	}
	return out, nil
}

func expandHome(p string) (string, error) {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		p = filepath.Join(home, rest)
	}
	return p, nil
}

// run executes the scenarios in order, updating the report after each.
func (c config) run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	dir, err := os.MkdirTemp(c.Dir, "writ-bench-")
	if err != nil {
		return err
	}
	if c.Keep {
		fmt.Fprintln(stderr, "data directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	env := collectEnvironment(args, dir)
	if env.Fsync, err = measureFsync(ctx, dir, 500, 2*time.Second); err != nil {
		return err
	}
	if c.Vault != "" {
		if out, err := exec.CommandContext(ctx, c.Vault, "version").Output(); err == nil {
			env.Vault = strings.TrimSpace(string(out)) + " (dev server: in-memory storage)"
		}
	}
	perf := c.Perf
	if _, err := exec.LookPath("perf"); perf && err != nil {
		fmt.Fprintln(stderr, "perf not found; fsyncs per grant will not be counted")
		perf = false
	}
	rc := runConfig{
		Rate: c.Rate, Loads: c.Loads, Block: c.Block, Blocks: c.Blocks,
		Probe: c.Probe, ProbeReps: c.ProbeReps, Concurrency: c.Concurrency,
		Warmup: c.Warmup, Timeout: c.Timeout, MaxInFlight: c.MaxInFlight,
		Perf: perf, Dir: dir, Progress: stderr,
	}
	r := newRunner(rc)
	p, err := newPKI()
	if err != nil {
		return err
	}
	secs := []section{{ID: "env", Body: renderEnvironment(env)}}
	emit := func(s section) error {
		secs = append(secs, s)
		fmt.Fprintln(stdout, s.Body)
		if c.Out == "" {
			return nil
		}
		return writeReport(c.Out, secs)
	}
	fmt.Fprintln(stdout, secs[0].Body)
	for _, name := range c.Scenarios {
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == scenarioFsync {
			f, err := measureFsync(ctx, dir, 2000, 5*time.Second)
			if err != nil {
				return err
			}
			if err := emit(section{ID: name, Body: renderFsync(f, env)}); err != nil {
				return err
			}
			continue
		}
		sc, err := c.newScenario(ctx, name, mkdir(dir, name), p)
		if err != nil {
			return fmt.Errorf("%s: set up: %w", name, err)
		}
		res, err := r.run(ctx, sc)
		cerr := sc.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if cerr != nil {
			return fmt.Errorf("%s: close: %w", name, cerr)
		}
		if err := emit(section{ID: name, Body: renderScenario(res, rc, env)}); err != nil {
			return err
		}
	}
	return nil
}

func (c config) newScenario(ctx context.Context, name, dir string, p *pki) (*scenario, error) {
	switch name {
	case scenarioLedger:
		return ledgerScenario(dir, p)
	case scenarioConnection:
		return connectionScenario(dir, p)
	case scenarioVault:
		return vaultScenario(ctx, dir, p, c.Vault)
	case scenarioCheckpoints:
		return checkpointsScenario(name, "L1", dir, p, checkpointsDefault)
	case scenarioCheckpointsFast:
		return checkpointsScenario(name, "L2", dir, p, checkpointsFast)
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}
