package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/writ-dev/writ/broker"
)

// reconcileInterval is how often the reconciler looks for orphan intents
// (credentials minted at Vault whose grant never reached the ledger).
const reconcileInterval = 30 * time.Second

// reconcileAtStart runs one reconciler pass before the broker serves, so a
// credential minted just before a crash is revoked before anything else
// happens (reliability case T1). A failure (Vault unreachable) is logged,
// not fatal: the intents stay and the background job tries again; what
// they minted is bounded by its TTL meanwhile.
func (d *Daemon) reconcileAtStart(ctx context.Context, srv *broker.Server) {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, err := srv.ReconcileIntents(rctx)
	attrs := []any{slog.Int("intents", rep.Intents), slog.Int("recorded", rep.Recorded), slog.Int("orphans_revoked", rep.Revoked),
		slog.Int("cleared", rep.Cleared), slog.Int("pending", rep.Pending)}
	switch {
	case err != nil:
		d.log.Error("reconcile intents at start", append(attrs, slog.Any("error", err))...)
	case rep.Intents > 0:
		d.log.Warn("reconciled intents left by an earlier run", attrs...)
	}
}
