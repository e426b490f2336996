package daemon

import (
	"context"
	"time"
)

// startJobs starts the background jobs. Shutdown cancels them after the
// listeners have stopped and awaits them before the store closes. Add a
// background job here, with d.life.goJob.
func (d *Daemon) startJobs(c *components) {
	srv, revoker := c.srv, c.revoker
	d.life.goJob(func(ctx context.Context) { srv.RunExpiry(ctx, expiryInterval) })
	d.life.goJob(func(ctx context.Context) { revoker.Run(ctx, revocationInterval) })
	d.life.goJob(func(ctx context.Context) { srv.RunReconciler(ctx, reconcileInterval) })
	d.life.goJob(d.recoverStore)
}

// defaultStoreRetry is how often a store that failed closed is reopened.
const defaultStoreRetry = 5 * time.Second

// onStoreFailure is the store's OnFailure: after a failed commit (an fsync
// error, a full disk) the store refuses every read and write; /readyz says
// not ready and recoverStore reopens it.
func (d *Daemon) onStoreFailure(err error) {
	d.log.Error("store failed a write and refuses all access until it is reopened; grants fail with UNAVAILABLE meanwhile", "error", err)
	select {
	case d.storeFailed <- struct{}{}:
	default:
	}
}

// recoverStore closes and reopens the store after it failed, never
// continuing on the same file handle (fsyncgate), retrying while the disk
// stays full or failing. The daemon keeps running meanwhile: grants fail
// closed with UNAVAILABLE, and /readyz tells the load balancer.
func (d *Daemon) recoverStore(ctx context.Context) {
	retry := d.opts.storeRetry
	if retry <= 0 {
		retry = defaultStoreRetry
	}
	t := time.NewTicker(retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.storeFailed:
		case <-t.C:
		}
		if d.store.Err() == nil {
			continue
		}
		if err := d.store.Reopen(); err != nil {
			d.log.Warn("store still unavailable; will retry", "error", err, "retry_in", retry)
			continue
		}
		d.log.Info("store reopened; accepting grants again")
	}
}
