// Command writ-bench measures the broker under open-loop load and compares
// two variants of one design choice at a time, as the performance design
// note asks; docs/BENCHMARKS.md holds the results and how to read them.
//
// Each scenario starts an in-process broker on loopback with real mTLS
// (dev CA SVIDs), a real bbolt ledger in a temporary directory and the local
// EdDSA JWT issuer (and, for the vault scenario, a "vault server -dev"
// child process). Requests arrive on a fixed schedule whatever the
// server's progress, latency is measured from each request's intended start
// into an HdrHistogram, and the two variants run in interleaved blocks
// (A B A B …) in one process so that drift on a shared machine hits both.
//
// Usage:
//
//	go run ./cmd/writ-bench -scenario all -blocks 5 -block 10s -vault ~/.cache/writ/vault-v1.13.0/vault
//
// Results are printed and written into -out, replacing the sections this
// tool generated before and keeping everything else.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "writ-bench:", err)
		os.Exit(1)
	}
}

// run parses args, runs the selected scenarios and writes the report. The
// report goes to stdout and, unless -out is empty, into that file; progress
// goes to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	return cfg.run(ctx, args, stdout, stderr)
}
