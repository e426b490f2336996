package client

import (
	"context"
	"fmt"
	"log/slog"

	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Issue asks the broker for a new credential under entitlement, with the
// entitlement's max_ttl, bypassing the cache. Most callers want Credential;
// Issue is for callers that schedule renewals themselves.
//
// Errors wrap ErrDenied, ErrNotFound, ErrInvalid, ErrNeedsApproval or
// ErrUnavailable as the broker's status says, and ErrClosed after Close.
func (c *Client) Issue(ctx context.Context, entitlement string) (Credential, error) {
	if c.isClosed() {
		return Credential{}, fmt.Errorf("client: issue credential %q: %w", entitlement, ErrClosed)
	}
	resp, err := c.rpc.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: entitlement})
	if err != nil {
		return Credential{}, wrapRPC(fmt.Sprintf("issue credential %q", entitlement), err)
	}
	return credentialFromProto(resp.GetCredential()), nil
}

// Credential returns a credential for entitlement, from the cache while it
// is before its renewal time (see Config.RenewFraction and Config.Jitter), or
// else newly issued by the broker. Concurrent callers for one entitlement
// share one request to the broker, which runs for at most Config.Timeout
// whatever happens to the ctx of the caller that started it; ctx bounds only
// how long this caller waits.
//
// If the renewal fails while the cached credential is still valid,
// Credential logs the failure and returns the cached credential with a nil
// error; for a short while afterwards (a couple of seconds) it returns the
// cached credential without asking the broker again. Once the cached
// credential has expired, the error is returned; it wraps the sentinels
// documented on Issue.
func (c *Client) Credential(ctx context.Context, entitlement string) (Credential, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Credential{}, fmt.Errorf("client: credential %q: %w", entitlement, ErrClosed)
	}
	now := c.now()
	e := c.cache[entitlement]
	if e != nil && !e.cred.Expired(now) && (now.Before(e.renewAt) || now.Before(e.retryAfter)) {
		c.mu.Unlock()
		return e.cred, nil
	}
	f := c.flights[entitlement]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		c.flights[entitlement] = f
		c.wg.Add(1)
		go c.fetch(context.WithoutCancel(ctx), entitlement, f)
	}
	c.mu.Unlock()

	select {
	case <-f.done:
		return f.cred, f.err
	case <-ctx.Done():
		return Credential{}, fmt.Errorf("client: credential %q: %w", entitlement, context.Cause(ctx))
	}
}

// fetch issues a credential for entitlement, updates the cache and completes
// f. ctx carries the starting caller's values but not its cancellation.
func (c *Client) fetch(ctx context.Context, entitlement string, f *flight) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	stop := context.AfterFunc(c.base, cancel) // Close cancels it
	defer stop()

	cred, err := c.Issue(ctx, entitlement)

	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(f.done)
	delete(c.flights, entitlement)
	now := c.now()
	if err == nil {
		c.cache[entitlement] = &entry{cred: cred, renewAt: renewTime(cred.IssuedAt, cred.ExpiresAt, c.fraction, c.jitter, c.rand())}
		f.cred = cred
		return
	}
	e := c.cache[entitlement]
	if e == nil || e.cred.Expired(now) {
		f.err = err
		return
	}
	e.retryAfter = now.Add(retryAfterFailure)
	c.log.WarnContext(ctx, "credential renewal failed; serving the cached credential until it expires",
		slog.String("entitlement", entitlement),
		slog.String("reference", e.cred.Reference),
		slog.Time("expires_at", e.cred.ExpiresAt),
		slog.Any("error", err))
	f.cred = e.cred
}
