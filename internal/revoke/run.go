package revoke

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// step is what RunOnce did with one claimed item.
type step int

const (
	stepDone    step = iota // revoked or expired: off the queue
	stepFailed              // attempt failed: rescheduled
	stepSkipped             // not finished (ctx ended, or Done failed): claimed until the lease runs out
)

// RunOnce claims up to Config.BatchSize due items and works them,
// Config.Concurrency at a time. An item whose credential has expired is
// taken off the queue without calling the issuer; otherwise a successful
// revocation takes it off the queue, and a failed one reschedules it with
// exponential backoff and full jitter, capped at MaxBackoff. OnDone is
// called for each item taken off the queue.
//
// done counts items taken off the queue and failed counts failed
// attempts. err reports a queue that could not be read, or queue writes
// that failed (those items are retried when their claim runs out). Items
// not yet started when ctx ends are left claimed and retried later.
func (r *Revoker) RunOnce(ctx context.Context) (done, failed int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, fmt.Errorf("process revocation queue: %w", err)
	}
	items, err := r.cfg.Queue.Due(ctx, r.now(), r.lease(), r.cfg.BatchSize)
	if err != nil {
		return 0, 0, fmt.Errorf("claim due revocations: %w", err)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, r.cfg.Concurrency)
	)
	for _, it := range items {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			st, err := r.process(ctx, it)
			mu.Lock()
			defer mu.Unlock()
			switch st {
			case stepDone:
				done++
			case stepFailed:
				failed++
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return done, failed, errors.Join(errs...)
}

// lease is how long Due claims a batch: every round of Concurrency
// attempts, plus one attempt timeout of slack.
func (r *Revoker) lease() time.Duration {
	rounds := (r.cfg.BatchSize + r.cfg.Concurrency - 1) / r.cfg.Concurrency
	return time.Duration(rounds+1) * r.cfg.AttemptTimeout
}

// process works one claimed item.
func (r *Revoker) process(ctx context.Context, it Item) (step, error) {
	if ctx.Err() != nil {
		return stepSkipped, nil
	}
	qctx := context.WithoutCancel(ctx)
	outcome := OutcomeRevoked
	if r.expired(it.Ref, r.now()) {
		outcome = OutcomeExpired
	} else if err := r.attempt(ctx, it.Ref); err != nil {
		it.Attempts++
		it.LastError = err.Error()
		it.NextAt = r.now().Add(r.backoff(it.Attempts))
		if err := r.cfg.Queue.Reschedule(qctx, it.ID, it.Attempts, it.NextAt, it.LastError); err != nil {
			return stepFailed, fmt.Errorf("reschedule revocation %s: %w", it.ID, err)
		}
		r.reportFailure(qctx, it)
		return stepFailed, nil
	}
	if err := r.cfg.Queue.Done(qctx, it.ID); err != nil {
		// Still queued: it comes back when the claim runs out and is
		// revoked again, harmlessly, and only then reported to OnDone.
		return stepSkipped, fmt.Errorf("finish revocation %s (%s): %w", it.ID, outcome, err)
	}
	r.log.InfoContext(ctx, "queued revocation finished", "item_id", it.ID, "request_id", it.RequestID,
		"grant_id", it.GrantID, "credential_kind", it.Ref.Kind, "outcome", outcome, "attempts", it.Attempts)
	if r.cfg.OnDone != nil {
		r.cfg.OnDone(qctx, it, outcome)
	}
	return stepDone, nil
}

// Run calls RunOnce at once and then every interval (default: one second)
// until ctx is done, logging errors. When a batch comes back full and
// without failures it goes again without waiting.
func (r *Revoker) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			done, failed, err := r.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				r.log.ErrorContext(ctx, "revocation queue run failed", "error", err)
			}
			if err != nil || failed > 0 || done < r.cfg.BatchSize {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
