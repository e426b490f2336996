// Command writd is the Writ broker daemon.
//
//	writd serve --config writ.yaml   run for real
//	writd dev                        a self-contained demo, no external services
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/writ-dev/writ/internal/daemon"
)

func main() {
	// SIGHUP is caught first, so that one arriving during start-up is
	// ignored too rather than killing the process.
	hangup, stopHangup := daemon.NotifyHangup()
	defer stopHangup()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, hangup); err != nil {
		fmt.Fprintln(os.Stderr, "writd:", err)
		os.Exit(1)
	}
}
