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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "writd:", err)
		os.Exit(1)
	}
}
