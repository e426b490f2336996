package approval

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ServiceConfig holds what a Service needs. Store and Policy are required.
type ServiceConfig struct {
	// Store persists requests and grant records.
	Store Store
	// Policy returns the policy in force; it is called once per operation,
	// so a reloaded policy takes effect on the next call. A nil policy
	// denies everything.
	Policy func() *Policy
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NewID returns a new, unique request ID; nil means a random "r_…".
	NewID func() string
	// BreakGlass persists break-glass uses; optional. Without it the
	// break-glass methods fail (break-glass is then off).
	BreakGlass BreakGlassStore
}

// Service runs the request lifecycle against a Store: the pure functions of
// this package (NewRequest, ApplyReview, Cancel, Revoke, Expire, DecideUnder)
// applied inside the store's compare-and-swap, so concurrent reviewers and
// several brokers sharing a store never both win. It is safe for concurrent
// use. Authorization of the caller (who may revoke, who may list) is the
// caller's concern; separation of duties is enforced here.
type Service struct {
	store  Store
	policy func() *Policy
	now    func() time.Time
	newID  func() string
	bg     BreakGlassStore
}

// NewService returns a Service built from cfg. It returns an error if Store
// or Policy is missing.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Store == nil || cfg.Policy == nil {
		return nil, errors.New("approval: ServiceConfig.Store and ServiceConfig.Policy are required")
	}
	s := &Service{store: cfg.Store, policy: cfg.Policy, now: cfg.Now, newID: cfg.NewID, bg: cfg.BreakGlass}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = func() string { return "r_" + rand.Text() }
	}
	return s, nil
}

// In returns a Service like s whose requests, grant records and break-glass
// uses are read and written through tx, so that each state change commits
// together with the caller's other writes in the same transaction (the
// decision's ledger records, the revocations it implies) or not at all.
// Use it inside the transaction only.
func (s *Service) In(tx Tx) *Service {
	in := *s
	in.store, in.bg = tx, tx
	return &in
}

// Submit creates a pending request from in (see NewRequest for the checks
// and their errors), giving it a new ID if in.ID is empty. It returns
// ErrConflict if the ID is taken.
func (s *Service) Submit(ctx context.Context, in RequestInput) (Request, error) {
	if in.ID == "" {
		in.ID = s.newID()
	}
	e, err := s.policy().Lookup(in.Entitlement)
	if err != nil {
		return Request{}, fmt.Errorf("submit request: %w", err)
	}
	r, err := NewRequest(in, e, s.now())
	if err != nil {
		return Request{}, err
	}
	if err := s.store.CreateRequest(ctx, r); err != nil {
		return Request{}, fmt.Errorf("submit request %s: %w", r.ID, err)
	}
	return r, nil
}

// Review applies rev to request id at the current time (rev.At is set to it)
// and returns the stored request. See ApplyReview for the rules and errors;
// ErrNotFound means there is no such request.
//
// If the request's deadline had passed, Review stores the expiry and returns
// the expired request together with ErrResolved, so the caller can record the
// expiry.
func (s *Service) Review(ctx context.Context, id string, rev Review) (Request, error) {
	now := s.now()
	rev.At = now
	pol := s.policy()
	return s.update(ctx, id, now, func(r *Request) error {
		e, _ := pol.Lookup(r.Entitlement) // nil: ApplyReview reports it
		_, err := ApplyReview(r, e, rev, now)
		return err
	})
}

// Cancel withdraws pending request id on behalf of by, its requester (see
// Cancel for the errors). An expired request is handled as in Review.
func (s *Service) Cancel(ctx context.Context, id string, by Principal, note string) (Request, error) {
	now := s.now()
	return s.update(ctx, id, now, func(r *Request) error {
		return Cancel(r, by, note, now)
	})
}

// Revocation is what Service.Revoke did.
type Revocation struct {
	// Request is the stored request.
	Request Request
	// Grants are the credentials minted under it, oldest first: the caller
	// must now revoke them at their issuers.
	Grants []GrantRecord
	// Again reports that the request was already revoked, or its approval
	// already expired, so nothing changed: Grants are listed so that what
	// is still live can be revoked again.
	Again bool
}

// Revoke ends approval id early on behalf of by and returns the revoked
// request and the credentials minted under it, which the caller must now
// revoke at their issuers. See Revoke for the errors; an approval whose window
// already ended is stored as expired and reported as in Review.
//
// Revoking a request that is already revoked, or an approval that already
// expired, changes nothing and is not an error: the Revocation has Again set
// and lists the grants, so that a revocation cut short (a crash, an issuer
// down) can be finished by asking again.
func (s *Service) Revoke(ctx context.Context, id string, by Principal, reason string) (Revocation, error) {
	now := s.now()
	var again, expired bool
	r, err := s.store.UpdateRequest(ctx, id, func(r *Request) error {
		again, expired = false, false // the store may call this again after a conflict
		if r.State == StateRevoked || (r.State == StateExpired && !r.ApprovedAt.IsZero()) {
			if by == "" {
				return fmt.Errorf("revoke request %s: no revoker: %w", r.ID, ErrInvalid)
			}
			if err := checkText("reason", reason, DefaultMaxReasonLen); err != nil {
				return fmt.Errorf("revoke request %s: %w", r.ID, err)
			}
			again = true
			return errUnchanged
		}
		if Expire(r, now) {
			expired = true
			return nil
		}
		return Revoke(r, by, reason, now)
	})
	switch {
	case again:
		if r, err = s.store.GetRequest(ctx, id); err != nil {
			return Revocation{}, fmt.Errorf("revoke request %s again: %w", id, err)
		}
	case err != nil:
		return Revocation{}, err
	case expired:
		return Revocation{Request: r}, fmt.Errorf("revoke request %s: it expired at %s: %w", id, r.ResolvedAt.Format(time.RFC3339), ErrResolved)
	}
	grants, err := s.store.Grants(ctx, id)
	if err != nil {
		return Revocation{Request: r, Again: again}, fmt.Errorf("list grants of revoked request %s: %w", id, err)
	}
	return Revocation{Request: r, Grants: grants, Again: again}, nil
}

// errUnchanged tells UpdateRequest to store nothing, without an error for
// the caller.
var errUnchanged = errors.New("request unchanged")

// Grants returns the credentials minted under request id, oldest first.
func (s *Service) Grants(ctx context.Context, id string) ([]GrantRecord, error) {
	return s.store.Grants(ctx, id)
}

// GrantsFor returns the most recent credentials minted for beneficiary since
// the given time, at most limit of them (0: no limit), newest first: the
// context reviewers see.
func (s *Service) GrantsFor(ctx context.Context, beneficiary Principal, since time.Time, limit int) ([]GrantRecord, error) {
	return s.store.GrantsFor(ctx, beneficiary, since, limit)
}

// Get returns request id as of now: a request past its deadline is shown as
// expired even before ExpireDue stores that. It returns ErrNotFound if there
// is no such request.
func (s *Service) Get(ctx context.Context, id string) (Request, error) {
	r, err := s.store.GetRequest(ctx, id)
	if err != nil {
		return Request{}, err
	}
	Expire(&r, s.now())
	return r, nil
}

// List returns the requests matching f, newest first, each as of now (see
// Get). A request that f selected by its stored state but that has since
// expired is left out when f.States does not include StateExpired, so the
// result may be shorter than f.Limit.
func (s *Service) List(ctx context.Context, f Filter) ([]Request, error) {
	rs, err := s.store.ListRequests(ctx, f)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := rs[:0]
	for _, r := range rs {
		if Expire(&r, now) && len(f.States) > 0 && !slices.Contains(f.States, r.State) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// Authorize decides whether beneficiary may be granted entitlement for ttl
// now and returns the grant to mint, with ID grantID. For an entitlement
// approved automatically it is Policy.Decide. For one that needs approvers it
// finds the live approval for beneficiary and entitlement (approved, window
// not ended; the one ending last wins) and returns DecideUnder's grant, whose
// TTL never passes the window.
//
// When no live approval exists it returns ErrNotApproved, saying to request
// access first or naming the pending request if there is one, or
// ErrWindowEnded if the latest approval's window is over. Otherwise it returns
// the errors of Decide and DecideUnder.
func (s *Service) Authorize(ctx context.Context, beneficiary Principal, entitlement string, ttl time.Duration, grantID string) (Grant, error) {
	now := s.now()
	pol := s.policy()
	e, err := pol.Lookup(entitlement)
	if err != nil {
		return Grant{}, err
	}
	if e.Mode != ModeApprovers {
		return pol.Decide(ctx, grantID, beneficiary, entitlement, ttl, now)
	}
	if _, ok := e.Eligible(beneficiary); !ok {
		return Grant{}, fmt.Errorf("%s may not request %q: %w", beneficiary, entitlement, ErrNotEligible)
	}
	approved, err := s.store.ListRequests(ctx, Filter{States: []State{StateApproved}, Beneficiary: beneficiary, Entitlement: entitlement})
	if err != nil {
		return Grant{}, fmt.Errorf("find approval of %q for %s: %w", entitlement, beneficiary, err)
	}
	var live, ended *Request
	for i := range approved {
		r := &approved[i]
		switch {
		case r.State != StateApproved:
		case now.Before(r.WindowEnd):
			if live == nil || r.WindowEnd.After(live.WindowEnd) {
				live = r
			}
		case ended == nil || r.WindowEnd.After(ended.WindowEnd):
			ended = r
		}
	}
	if live != nil {
		return pol.DecideUnder(ctx, grantID, *live, ttl, now)
	}
	pending, err := s.store.ListRequests(ctx, Filter{States: []State{StatePending}, Beneficiary: beneficiary, Entitlement: entitlement})
	if err != nil {
		return Grant{}, fmt.Errorf("find approval of %q for %s: %w", entitlement, beneficiary, err)
	}
	for _, r := range pending {
		if r.State == StatePending && now.Before(r.PendingUntil) {
			return Grant{}, fmt.Errorf("%q for %s needs approval; request %s is still pending: %w", entitlement, beneficiary, r.ID, ErrNotApproved)
		}
	}
	if ended == nil {
		// The newest request may be an approval already swept to expired.
		last, err := s.store.ListRequests(ctx, Filter{States: []State{StateExpired}, Beneficiary: beneficiary, Entitlement: entitlement, Limit: 1})
		if err != nil {
			return Grant{}, fmt.Errorf("find approval of %q for %s: %w", entitlement, beneficiary, err)
		}
		if len(last) == 1 && !last[0].ApprovedAt.IsZero() {
			ended = &last[0]
		}
	}
	if ended != nil {
		return Grant{}, fmt.Errorf("%q for %s: the window of approval %s ended at %s; request access again: %w",
			entitlement, beneficiary, ended.ID, ended.WindowEnd.Format(time.RFC3339), ErrWindowEnded)
	}
	return Grant{}, fmt.Errorf("%q for %s needs approval; request access first: %w", entitlement, beneficiary, ErrNotApproved)
}

// RecordGrant adds g to the inventory of its request, so that revoking the
// request revokes the credential. Call it after minting and before handing
// the credential out.
//
// It returns ErrInvalid if g has no GrantID or RequestID. If the request was
// revoked meanwhile, it returns ErrResolved: the revocation may not have seen
// this grant, so the caller must revoke the credential itself (reliability
// case T23). The record is added first and the state read after, so a
// concurrent Service.Revoke either lists the grant or RecordGrant reports it.
func (s *Service) RecordGrant(ctx context.Context, g GrantRecord) error {
	if g.GrantID == "" || g.RequestID == "" {
		return fmt.Errorf("record grant %q under request %q: both ids are required: %w", g.GrantID, g.RequestID, ErrInvalid)
	}
	if err := s.store.AddGrant(ctx, g); err != nil {
		return fmt.Errorf("record grant %s under request %s: %w", g.GrantID, g.RequestID, err)
	}
	r, err := s.store.GetRequest(ctx, g.RequestID)
	if err != nil {
		return fmt.Errorf("record grant %s: check request %s: %w", g.GrantID, g.RequestID, err)
	}
	if r.State == StateRevoked {
		return fmt.Errorf("record grant %s: request %s was revoked at %s; revoke the credential: %w", g.GrantID, r.ID, r.ResolvedAt.Format(time.RFC3339), ErrResolved)
	}
	return nil
}

// errNotDue tells UpdateRequest to store nothing: the request needs no
// expiry (any longer).
var errNotDue = errors.New("request is not due to expire")

// ExpireDue stores the expiry of every pending request past its pending
// deadline and every approval past its window, and returns those it changed,
// for a background job to record. When several brokers run it at once, each
// expiry is reported by exactly one of them. Requests that could not be
// updated are reported in the joined error; the others are still returned.
// A caller that must record each expiry in the same transaction uses Due and
// ExpireOne instead.
func (s *Service) ExpireDue(ctx context.Context) ([]Request, error) {
	due, err := s.Due(ctx)
	if err != nil {
		return nil, err
	}
	var changed []Request
	var errs []error
	for _, r := range due {
		stored, ok, err := s.ExpireOne(ctx, r.ID)
		switch {
		case err != nil:
			errs = append(errs, err)
			if ctx.Err() != nil {
				return changed, errors.Join(errs...)
			}
		case ok:
			changed = append(changed, stored)
		}
	}
	return changed, errors.Join(errs...)
}

// Due returns the pending requests past their pending deadline and the
// approvals past their window, as stored (not yet expired): the candidates
// for ExpireOne.
func (s *Service) Due(ctx context.Context) ([]Request, error) {
	now := s.now()
	rs, err := s.store.ListRequests(ctx, Filter{States: []State{StatePending, StateApproved}})
	if err != nil {
		return nil, fmt.Errorf("expire due requests: %w", err)
	}
	out := rs[:0]
	for _, r := range rs {
		if c := r; Expire(&c, now) {
			out = append(out, r)
		}
	}
	return out, nil
}

// ExpireOne stores the expiry of request id if it is due now, and reports
// whether this call stored it (false when it is not due, no longer exists,
// or another broker or a review got there first).
func (s *Service) ExpireOne(ctx context.Context, id string) (Request, bool, error) {
	now := s.now()
	stored, err := s.store.UpdateRequest(ctx, id, func(r *Request) error {
		if !Expire(r, now) {
			return errNotDue
		}
		return nil
	})
	switch {
	case err == nil:
		return stored, true, nil
	case errors.Is(err, errNotDue), errors.Is(err, ErrNotFound):
		return Request{}, false, nil
	default:
		return Request{}, false, fmt.Errorf("expire request %s: %w", id, err)
	}
}

// update runs apply on request id inside the store's compare-and-swap, after
// Expire. If the request had expired, the expiry is stored even when apply
// then fails, and the stored request is returned with apply's error.
func (s *Service) update(ctx context.Context, id string, now time.Time, apply func(*Request) error) (Request, error) {
	var outcome, refused error
	stored, err := s.store.UpdateRequest(ctx, id, func(r *Request) error {
		outcome, refused = nil, nil // the store may call this again after a conflict
		expired := Expire(r, now)
		if err := apply(r); err != nil {
			if !expired {
				refused = err
				return err
			}
			outcome = err
		}
		return nil
	})
	switch {
	case err != nil && err == refused:
		return Request{}, err
	case err != nil:
		return Request{}, fmt.Errorf("update request %s: %w", id, err)
	}
	return stored, outcome
}
