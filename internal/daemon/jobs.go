package daemon

import "context"

// startJobs starts the background jobs. Shutdown cancels them after the
// listeners have stopped and awaits them before the store closes. Add a
// background job here, with d.life.goJob.
func (d *Daemon) startJobs(c *components) {
	srv, revoker := c.srv, c.revoker
	d.life.goJob(func(ctx context.Context) { srv.RunExpiry(ctx, expiryInterval) })
	d.life.goJob(func(ctx context.Context) { revoker.Run(ctx, revocationInterval) })
}
