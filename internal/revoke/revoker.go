package revoke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/writ-dev/writ/approval"
)

// Defaults for Config's zero values.
const (
	DefaultBaseBackoff    = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultAttemptTimeout = 10 * time.Second
	DefaultAlertAfter     = 6
	DefaultConcurrency    = 4
	DefaultBatchSize      = 64
	DefaultExpiryLeeway   = time.Minute
)

// Config configures a Revoker. Issuers and Queue are required; zero values
// elsewhere get the defaults above.
type Config struct {
	// Issuers revoke credentials, by kind.
	Issuers map[approval.CredentialKind]Issuer
	// Queue holds revocations still to do.
	Queue Queue
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives failures; nil discards.
	Logger *slog.Logger

	// BaseBackoff and MaxBackoff bound retries: after n failed attempts
	// the next is due after a uniformly random delay in
	// [0, min(MaxBackoff, BaseBackoff·2^(n-1))] (full jitter).
	BaseBackoff, MaxBackoff time.Duration
	// AttemptTimeout bounds each call to an Issuer.
	AttemptTimeout time.Duration
	// AlertAfter is the number of failed attempts (and every multiple of
	// it after that) at which a failure is logged at error level and
	// OnAlert is called; lesser failures are logged as warnings.
	AlertAfter int
	// Concurrency is how many issuer calls run at once.
	Concurrency int
	// BatchSize is how many due items one RunOnce claims.
	BatchSize int
	// ExpiryLeeway is how long past its expiry a credential is still
	// revoked rather than skipped as expired. It covers clock skew and
	// relying parties that accept slightly expired tokens.
	ExpiryLeeway time.Duration

	// OnDone, if set, is called when RunOnce takes an item off the queue:
	// outcome is OutcomeRevoked, or OutcomeExpired if the credential
	// expired while queued. (RevokeAll's own outcomes are in its Receipt.)
	OnDone func(ctx context.Context, it Item, outcome Outcome)
	// OnAlert, if set, is called with the item (Attempts and LastError
	// updated) when a failure reaches AlertAfter or a multiple of it.
	OnAlert func(ctx context.Context, it Item)
}

// Revoker revokes credentials through their issuers and retries failures
// from a durable queue. It is safe for concurrent use.
type Revoker struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	randN func(n int64) int64 // uniform in [0, n); replaced in tests
}

// New returns a Revoker. It returns an error if Queue is nil or Issuers is
// empty or holds a nil Issuer.
func New(cfg Config) (*Revoker, error) {
	if cfg.Queue == nil {
		return nil, errors.New("revoke: Queue is required")
	}
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("revoke: at least one Issuer is required")
	}
	for k, is := range cfg.Issuers {
		if is == nil {
			return nil, fmt.Errorf("revoke: Issuer for kind %q is nil", k)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.BaseBackoff {
		cfg.MaxBackoff = cfg.BaseBackoff
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.AlertAfter <= 0 {
		cfg.AlertAfter = DefaultAlertAfter
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.ExpiryLeeway <= 0 {
		cfg.ExpiryLeeway = DefaultExpiryLeeway
	}
	return &Revoker{cfg: cfg, log: cfg.Logger, now: cfg.Now, randN: rand.Int64N}, nil
}

// RevokeAll ends every credential in grants, minted under requestID, and
// returns one Result per grant in the same order. Credentials past their
// expiry are skipped; each other one is queued durably first (claimed for
// two attempt timeouts), then revoked with its own AttemptTimeout, up to
// Config.Concurrency at a time, and taken off the queue on success. A
// failed attempt stays queued with a backoff; if the queue cannot be
// written either, the Result is OutcomeFailed and the failure is logged.
//
// Queue writes use a context detached from ctx's cancellation, so a
// cancelled caller still leaves every unfinished revocation queued.
//
// A caller that must queue the revocations in the same transaction as the
// decision that implies them uses Plan and Attempt instead.
func (r *Revoker) RevokeAll(ctx context.Context, requestID string, grants []approval.GrantRecord) Receipt {
	p := r.Plan(requestID, grants)
	qctx := context.WithoutCancel(ctx)
	for i, it := range p.Items {
		if err := r.cfg.Queue.Enqueue(qctx, it); err != nil {
			p.unqueued[i] = true
			r.log.ErrorContext(ctx, "revocation not queued before attempt", "request_id", it.RequestID, "grant_id", it.GrantID,
				"credential_kind", it.Ref.Kind, "credential_ref", it.Ref.ID, "error", err)
		}
	}
	return r.Attempt(ctx, p)
}

// Plan is what RevokeAll will do with grants: a Receipt with one Result per
// grant, final for the credentials already past their expiry
// (OutcomeExpired) or without a reference (OutcomeFailed, ErrNoRef), and
// OutcomeQueued for the others, whose queue Items, claimed for two attempt
// timeouts from now, are in Items.
type Plan struct {
	// Receipt holds a Result per grant.
	Receipt Receipt
	// Items are the revocations to queue, in grant order.
	Items []Item
	// pos[i] is the index in Receipt.Results of Items[i].
	pos []int
	// unqueued[i] is set when Items[i] could not be queued.
	unqueued []bool
}

// Plan returns the plan for revoking grants, minted under requestID, now.
// The caller stores p.Items in the queue (revoke.Queue.Enqueue, or the same
// write inside the transaction of the decision that implies them) and then
// calls Attempt.
func (r *Revoker) Plan(requestID string, grants []approval.GrantRecord) Plan {
	now := r.now()
	p := Plan{Receipt: Receipt{RequestID: requestID, Results: make([]Result, len(grants))}}
	for i, g := range grants {
		res := &p.Receipt.Results[i]
		*res = Result{GrantID: g.GrantID, Ref: g.Ref}
		if g.RequestID == "" {
			g.RequestID = requestID
		}
		switch {
		case r.expired(g.Ref, now):
			res.Outcome = OutcomeExpired
		case g.Ref.ID == "":
			r.log.Error("credential cannot be revoked", "request_id", g.RequestID, "grant_id", g.GrantID, "credential_kind", g.Ref.Kind, "error", ErrNoRef)
			res.Outcome, res.Error = OutcomeFailed, ErrNoRef.Error()
		default:
			res.Outcome = OutcomeQueued
			p.Items = append(p.Items, Item{
				ID:         ItemID(g.Ref),
				Ref:        g.Ref,
				RequestID:  g.RequestID,
				GrantID:    g.GrantID,
				NextAt:     now.Add(2 * r.cfg.AttemptTimeout),
				EnqueuedAt: now,
			})
			p.pos = append(p.pos, i)
		}
	}
	p.unqueued = make([]bool, len(p.Items))
	return p
}

// Attempt revokes p's Items, which the caller has queued, up to
// Config.Concurrency at a time, and returns p's Receipt with their
// outcomes: revoked and taken off the queue, or still queued with a
// backoff (OutcomeQueued and the attempt's error). Queue writes use a
// context detached from ctx's cancellation.
func (r *Revoker) Attempt(ctx context.Context, p Plan) Receipt {
	rec := Receipt{RequestID: p.Receipt.RequestID, Results: slices.Clone(p.Receipt.Results)}
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, it := range p.Items {
		queued := i >= len(p.unqueued) || !p.unqueued[i]
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			res := &rec.Results[p.pos[i]]
			res.Outcome, res.Error = r.attemptQueued(ctx, it, queued)
		})
	}
	wg.Wait()
	return rec
}

// attemptQueued runs one attempt of RevokeAll on it, queued beforehand
// unless queued is false.
func (r *Revoker) attemptQueued(ctx context.Context, it Item, queued bool) (Outcome, string) {
	log := r.log.With("request_id", it.RequestID, "grant_id", it.GrantID, "credential_kind", it.Ref.Kind, "credential_ref", it.Ref.ID)
	qctx := context.WithoutCancel(ctx)
	attemptErr := r.attempt(ctx, it.Ref)
	if attemptErr == nil {
		if queued {
			if err := r.cfg.Queue.Done(qctx, it.ID); err != nil {
				// The item stays queued; RunOnce will revoke it again, harmlessly.
				log.WarnContext(ctx, "revoked credential not taken off the queue", "error", err)
			}
		}
		return OutcomeRevoked, ""
	}
	it.Attempts = 1
	it.LastError = attemptErr.Error()
	it.NextAt = r.now().Add(r.backoff(it.Attempts))
	if queued {
		if err := r.cfg.Queue.Reschedule(qctx, it.ID, it.Attempts, it.NextAt, it.LastError); err != nil {
			// Still queued, due when the claim runs out.
			log.WarnContext(ctx, "revocation retry not rescheduled", "error", err)
		}
	} else if err := r.cfg.Queue.Enqueue(qctx, it); err != nil {
		log.ErrorContext(ctx, "revocation failed and could not be queued", "attempt_error", attemptErr, "error", err)
		return OutcomeFailed, fmt.Sprintf("revoke: %v; not queued: %v", attemptErr, err)
	}
	r.reportFailure(qctx, it)
	return OutcomeQueued, it.LastError
}

// expired reports whether ref stopped working on its own, with leeway.
func (r *Revoker) expired(ref approval.CredentialRef, now time.Time) bool {
	return !ref.Expires.IsZero() && !now.Before(ref.Expires.Add(r.cfg.ExpiryLeeway))
}

// attempt calls the issuer of ref's kind, bounded by AttemptTimeout.
func (r *Revoker) attempt(ctx context.Context, ref approval.CredentialRef) error {
	is, ok := r.cfg.Issuers[ref.Kind]
	if !ok {
		return fmt.Errorf("revoke %s credential: %w", ref.Kind, ErrNoIssuer)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("revoke %s credential: %w", ref.Kind, err)
	}
	actx, cancel := context.WithTimeout(ctx, r.cfg.AttemptTimeout)
	defer cancel()
	if err := is.Revoke(actx, ref); err != nil {
		return fmt.Errorf("revoke %s credential: %w", ref.Kind, err)
	}
	return nil
}

// reportFailure logs a failed attempt of it (Attempts and LastError
// already updated), at error level with OnAlert at every AlertAfter-th
// failure.
func (r *Revoker) reportFailure(ctx context.Context, it Item) {
	attrs := []any{
		"item_id", it.ID, "request_id", it.RequestID, "grant_id", it.GrantID,
		"credential_kind", it.Ref.Kind, "attempts", it.Attempts, "next_at", it.NextAt, "error", it.LastError,
	}
	if it.Attempts%r.cfg.AlertAfter != 0 {
		r.log.WarnContext(ctx, "revocation attempt failed; will retry", attrs...)
		return
	}
	r.log.ErrorContext(ctx, "revocation keeps failing; credential may still be live", attrs...)
	if r.cfg.OnAlert != nil {
		r.cfg.OnAlert(ctx, it)
	}
}

// backoff returns the delay after attempts failed attempts: uniform in
// [0, min(MaxBackoff, BaseBackoff·2^(attempts-1))] (full jitter).
func (r *Revoker) backoff(attempts int) time.Duration {
	return backoff(attempts, r.cfg.BaseBackoff, r.cfg.MaxBackoff, r.randN)
}

// backoff is Revoker.backoff with its parameters explicit; randN(n) must
// return a uniform value in [0, n).
func backoff(attempts int, base, maxDelay time.Duration, randN func(int64) int64) time.Duration {
	ceil := base
	for i := 1; i < attempts && ceil < maxDelay; i++ {
		if ceil > maxDelay/2 {
			ceil = maxDelay
			break
		}
		ceil *= 2
	}
	n := int64(min(ceil, maxDelay))
	if n < math.MaxInt64 {
		n++ // randN's bound is exclusive; the cap itself is allowed
	}
	return time.Duration(randN(n))
}
