package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRun_Smoke runs the ledger scenario for one short block per variant at
// a fixed rate, to keep the tool compiling and working. It checks what was
// written, never how fast.
func TestRun_Smoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two brokers and runs load for a few seconds")
	}
	out := filepath.Join(t.TempDir(), "BENCH.md")
	if err := os.WriteFile(out, []byte("# Benchmarks\n\nHand-written text.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-scenario", "ledger", "-rate", "50", "-block", "1s", "-blocks", "1",
		"-warmup", "100ms", "-perf=false", "-dir", t.TempDir(), "-out", out}
	var stdout, stderr strings.Builder
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run(%q) = %v; stderr:\n%s", args, err, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Hand-written text.",
		beginMarker("env"), endMarker("env"),
		beginMarker(scenarioLedger), "### R2 — durable ledger vs no ledger",
		"| fixed | 50 | durable |", "| fixed | 50 | none |",
		"the hash chain verifies",
		endMarker(scenarioLedger),
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

// TestRun_CheckpointsSmoke runs the checkpoints-fast scenario (checkpoints
// with a directory and a webhook witness against none) for one short block
// per variant. It checks what was written, never how fast.
func TestRun_CheckpointsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two brokers and runs load for a few seconds")
	}
	out := filepath.Join(t.TempDir(), "BENCH.md")
	args := []string{"-scenario", "checkpoints-fast", "-rate", "50", "-block", "1s", "-blocks", "1",
		"-warmup", "100ms", "-perf=false", "-dir", t.TempDir(), "-out", out}
	var stdout, stderr strings.Builder
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run(%q) = %v; stderr:\n%s", args, err, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		beginMarker(scenarioCheckpointsFast),
		"### L2 — checkpoints and witnesses on (every 100 records / 1s) vs off",
		"| fixed | 50 | on |", "| fixed | 50 | off |",
		"records; it verifies.", "Checkpoints delivered during the run",
		endMarker(scenarioCheckpointsFast),
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

func TestReplaceSections(t *testing.T) {
	t.Parallel()
	sec := func(id, body string) string { return beginMarker(id) + "\n" + body + "\n" + endMarker(id) }
	tests := []struct {
		name string
		doc  string
		secs []section
		want string
	}{
		{
			name: "new section is appended after a blank line",
			doc:  "# B\n\ntext\n",
			secs: []section{{ID: "a", Body: "one"}},
			want: "# B\n\ntext\n\n" + sec("a", "one") + "\n",
		},
		{
			name: "existing section is replaced and the text around it kept",
			doc:  "head\n" + sec("a", "old\nlines") + "\ntail\n",
			secs: []section{{ID: "a", Body: "new\n"}},
			want: "head\n" + sec("a", "new") + "\ntail\n",
		},
		{
			name: "other sections are left alone",
			doc:  sec("a", "A") + "\n" + sec("b", "B") + "\n",
			secs: []section{{ID: "b", Body: "B2"}},
			want: sec("a", "A") + "\n" + sec("b", "B2") + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, replaceSections(tt.doc, tt.secs)); diff != "" {
				t.Errorf("replaceSections() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseScenarios(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		haveVault bool
		want      []string
		wantErr   bool
	}{
		{in: "all", want: []string{"fsync", "ledger", "connection", "checkpoints", "checkpoints-fast"}},
		{in: "all", haveVault: true, want: []string{"fsync", "ledger", "connection", "vault", "checkpoints", "checkpoints-fast"}},
		{in: "Checkpoints-Fast,checkpoints", want: []string{"checkpoints", "checkpoints-fast"}},
		{in: "R5,r2,ledger", want: []string{"ledger", "connection"}},
		{in: "vault", wantErr: true},
		{in: "disk", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseScenarios(tt.in, tt.haveVault)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseScenarios(%q, %v) err = %v, want error %v", tt.in, tt.haveVault, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseScenarios(%q, %v) mismatch (-want +got):\n%s", tt.in, tt.haveVault, diff)
		}
	}
}

// TestOpenLoop_Schedule checks that the generator starts exactly the
// scheduled number of requests whatever their latency: the schedule, not
// completions, decides when requests start.
func TestOpenLoop_Schedule(t *testing.T) {
	t.Parallel()
	slow := func(ctx context.Context) error {
		select {
		case <-time.After(300 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	res := openLoop(t.Context(), "slow", loadConfig{Rate: 100, Duration: 500 * time.Millisecond, Timeout: 5 * time.Second, MaxInFlight: 1000}, slow)
	if res.Started != 50 || res.OK+res.Errors != 50 {
		t.Errorf("openLoop(100/s for 0.5s) started %d, finished %d ok + %d errors; want 50 started and finished", res.Started, res.OK, res.Errors)
	}
	if res.Latency.TotalCount() != res.OK {
		t.Errorf("latency histogram holds %d values, want one per success (%d)", res.Latency.TotalCount(), res.OK)
	}
}

func TestRatioOfMedians(t *testing.T) {
	t.Parallel()
	r := ratioOfMedians([]float64{2, 4, 6}, []float64{1, 2, 3})
	if r.Ratio != 2 {
		t.Errorf("ratioOfMedians = %+v, want ratio 2", r)
	}
	if r.Lo > r.Ratio || r.Hi < r.Ratio {
		t.Errorf("bootstrap interval %.2f–%.2f does not contain %.2f", r.Lo, r.Hi, r.Ratio)
	}
}
