package vault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Backoff bounds for retries of idempotent requests (full jitter: each wait
// is uniform in [0, min(retryMaxWait, retryBaseWait·2^attempt))).
const (
	retryBaseWait = 100 * time.Millisecond
	retryMaxWait  = time.Second
)

// op describes one Vault request for do.
type op struct {
	// name is what the request does, e.g. "read dynamic secret".
	name string
	// path is the Vault path, for messages.
	path string
	// capability is what Writ's policy needs on path, for ErrDenied.
	capability string
	// idempotent requests (reads, revokes, renews) may be retried after
	// ErrUnavailable. Requests that mint are never retried.
	idempotent bool
	// login requests carry no token; a 403 is never a lost token.
	login bool
}

// do runs one Vault request fn through the circuit breaker and returns its
// error classified (see classify).
//
// Each attempt is bounded by the client's Timeout and by ctx; an attempt
// that outlives the Timeout while ctx is still live fails with
// ErrUnavailable. Idempotent requests are retried after ErrUnavailable up to
// the configured number of times, with full jitter, and never when the wait
// would pass ctx's deadline. While the breaker is open do fails fast with
// ErrCircuitOpen and ErrUnavailable without calling fn.
//
// A 403 with AuthCert or AuthAppRole may mean Writ's token expired or was
// revoked: do then checks the token, logs in again if it is gone, and
// repeats the request once. Vault does nothing for a 403, so this is safe
// even for requests that mint.
func (c *Client) do(ctx context.Context, o op, fn func(ctx context.Context) error) error {
	reauthed := false
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return classify(o.name, o.path, o.capability, err)
		}
		if err := c.breaker.allow(ctx); err != nil {
			return fmt.Errorf("%s: %q: %w", o.name, o.path, err)
		}
		gen := c.generation()
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		raw := fn(rctx)
		timedOut := raw != nil && ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded)
		cancel()
		var err error
		switch {
		case raw == nil:
		case timedOut:
			// Vault did not answer within Timeout; the caller's own
			// deadline has not passed.
			err = fmt.Errorf("%s: %q: no answer within %s: %w", o.name, o.path, c.timeout, ErrUnavailable)
		case o.login:
			err = classifyLogin(o.name, o.path, raw)
		default:
			err = classify(o.name, o.path, o.capability, raw)
		}
		c.breaker.record(ctx, err)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrDenied) && !o.login && !reauthed && c.login != nil {
			reauthed = true
			if c.recoverToken(ctx, gen) {
				attempt--
				continue
			}
			return err
		}
		if !o.idempotent || attempt >= c.retries || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrCircuitOpen) {
			return err
		}
		wait := rand.N(backoffCap(attempt))
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// generation returns the login generation, which changes at every login.
func (c *Client) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// backoffCap is the longest wait before retry number attempt+1.
func backoffCap(attempt int) time.Duration {
	if attempt >= 10 {
		return retryMaxWait
	}
	return min(retryMaxWait, retryBaseWait<<attempt)
}
