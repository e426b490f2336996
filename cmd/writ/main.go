// Command writ is the Writ command-line client: workloads and operators use
// it to obtain credentials, inspect the policy and verify the ledger.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		// friendly(err) may quote the broker, which may quote the caller's
		// or anyone's input: escaped, continuation lines indented.
		fmt.Fprintln(os.Stderr, "writ:", escIndented(friendly(err), "      "))
		os.Exit(exitCode(err))
	}
}
