package approval

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// breakGlass returns the configured BreakGlassStore, or an error wrapping
// ErrUnsupported when the Service has none (break-glass is off).
func (s *Service) breakGlass() (BreakGlassStore, error) {
	if s.bg == nil {
		return nil, fmt.Errorf("break-glass is not configured on this broker (no ServiceConfig.BreakGlass store): %w", ErrUnsupported)
	}
	return s.bg, nil
}

// TakeBreakGlass lets in.Taker break glass now: it decides with
// DecideBreakGlass, stores the open break-glass use and returns it with the
// grant to mint, with ID grantID. The caller mints the credential, then
// calls RecordBreakGlassGrant. in.ID is filled with a new "bg_…" ID when
// empty. No request is created or changed: break-glass never satisfies an
// approval.
//
// When the entitlement's rule has BlockWhileOverdue and the taker has an
// open break-glass use, under any entitlement, whose review is overdue, it
// returns ErrReviewOverdue naming that use and its due time, before
// deciding anything. Otherwise it returns DecideBreakGlass's errors,
// ErrConflict if in.ID is taken, or ErrUnsupported if the Service has no
// BreakGlassStore.
func (s *Service) TakeBreakGlass(ctx context.Context, in BreakGlassInput, grantID string) (BreakGlass, Grant, error) {
	bg, g, err := s.PrepareBreakGlass(ctx, in, grantID)
	if err != nil {
		return BreakGlass{}, Grant{}, err
	}
	if err := s.bg.CreateBreakGlass(ctx, bg); err != nil {
		return BreakGlass{}, Grant{}, fmt.Errorf("break glass %s on %q: %w", bg.ID, bg.Entitlement, err)
	}
	return bg, g, nil
}

// PrepareBreakGlass is TakeBreakGlass without storing the use: it returns
// the open use and the grant, with the same errors, for a caller that mints
// the credential first and then stores the use, with the grant and its
// credential recorded on it, in the same transaction as its ledger record
// (BreakGlassStore.CreateBreakGlass, through a Service bound to that
// transaction with In). A use is then never stored without its credential,
// nor a credential left without its review obligation.
func (s *Service) PrepareBreakGlass(ctx context.Context, in BreakGlassInput, grantID string) (BreakGlass, Grant, error) {
	store, err := s.breakGlass()
	if err != nil {
		return BreakGlass{}, Grant{}, err
	}
	if in.ID == "" {
		in.ID = "bg_" + rand.Text()
	}
	now := s.now()
	pol := s.policy()
	e, err := pol.Lookup(in.Entitlement)
	if err != nil {
		return BreakGlass{}, Grant{}, fmt.Errorf("break glass: %w", err)
	}
	if e.BreakGlass != nil && e.BreakGlass.BlockWhileOverdue && in.Taker != "" {
		if err := s.checkNotOverdue(ctx, store, in.Taker, e.Name, now); err != nil {
			return BreakGlass{}, Grant{}, err
		}
	}
	return pol.DecideBreakGlass(ctx, grantID, in, now)
}

// StoreBreakGlass stores bg, a use from PrepareBreakGlass with its grant and
// credential filled in. It returns ErrConflict if bg.ID is taken, or
// ErrUnsupported if the Service has no BreakGlassStore.
func (s *Service) StoreBreakGlass(ctx context.Context, bg BreakGlass) error {
	store, err := s.breakGlass()
	if err != nil {
		return err
	}
	if err := store.CreateBreakGlass(ctx, bg); err != nil {
		return fmt.Errorf("break glass %s on %q: %w", bg.ID, bg.Entitlement, err)
	}
	return nil
}

// checkNotOverdue returns ErrReviewOverdue, naming the use whose review was
// due first, if taker has an open break-glass use overdue at now.
func (s *Service) checkNotOverdue(ctx context.Context, store BreakGlassStore, taker Principal, entitlement string, now time.Time) error {
	open, err := store.ListBreakGlass(ctx, BreakGlassFilter{Open: true, Taker: taker})
	if err != nil {
		return fmt.Errorf("break glass on %q: check %s's open reviews: %w", entitlement, taker, err)
	}
	var first *BreakGlass
	for i := range open {
		bg := &open[i]
		if bg.Taker == taker && bg.Overdue(now) && (first == nil || bg.ReviewDue.Before(first.ReviewDue)) {
			first = bg
		}
	}
	if first == nil {
		return nil
	}
	return fmt.Errorf("%s may not break glass on %q: the review of break-glass %s (%q, taken %s) was due at %s and is still open; have it reviewed first: %w",
		taker, entitlement, first.ID, first.Entitlement, first.TakenAt.Format(time.RFC3339), first.ReviewDue.Format(time.RFC3339), ErrReviewOverdue)
}

// RecordBreakGlassGrant records on break-glass use id the grant minted for
// it and the credential's reference, for its reviewers and for revocation.
// Recording the same grant again updates the reference. It returns
// ErrInvalid for an empty grantID, ErrConflict if the use already records
// another grant, ErrNotFound if there is no such use, or ErrUnsupported if
// the Service has no BreakGlassStore. A closed review does not stop the
// record: the inventory must be complete.
func (s *Service) RecordBreakGlassGrant(ctx context.Context, id string, grantID string, ref CredentialRef) error {
	store, err := s.breakGlass()
	if err != nil {
		return err
	}
	if grantID == "" {
		return fmt.Errorf("record grant of break-glass %s: empty grant id: %w", id, ErrInvalid)
	}
	var refused error
	_, err = store.UpdateBreakGlass(ctx, id, func(bg *BreakGlass) error {
		refused = nil // the store may call this again after a conflict
		if bg.GrantID != "" && bg.GrantID != grantID {
			refused = fmt.Errorf("record grant %s of break-glass %s: it already records grant %s: %w", grantID, id, bg.GrantID, ErrConflict)
			return refused
		}
		bg.GrantID = grantID
		bg.Credential = ref
		return nil
	})
	switch {
	case err == nil:
		return nil
	case err == refused:
		return err
	default:
		return fmt.Errorf("record grant %s of break-glass %s: %w", grantID, id, err)
	}
}

// ReviewBreakGlass applies rev to break-glass use id at the current time
// (rev.At is set to it), under the break-glass rule of the policy in force,
// and returns the stored use. See ApplyBreakGlassReview for the rules and
// errors; ErrNotFound means there is no such use, ErrUnsupported that the
// Service has no BreakGlassStore.
func (s *Service) ReviewBreakGlass(ctx context.Context, id string, rev BreakGlassReview) (BreakGlass, error) {
	store, err := s.breakGlass()
	if err != nil {
		return BreakGlass{}, err
	}
	now := s.now()
	rev.At = now
	pol := s.policy()
	var refused error
	stored, err := store.UpdateBreakGlass(ctx, id, func(bg *BreakGlass) error {
		var rule *BreakGlassRule
		if e, err := pol.Lookup(bg.Entitlement); err == nil {
			rule = e.BreakGlass
		}
		_, refused = ApplyBreakGlassReview(bg, rule, rev, now)
		return refused
	})
	switch {
	case err == nil:
		return stored, nil
	case err == refused:
		return BreakGlass{}, err
	default:
		return BreakGlass{}, fmt.Errorf("review break-glass %s: %w", id, err)
	}
}

// GetBreakGlass returns break-glass use id, ErrNotFound if there is none, or
// ErrUnsupported if the Service has no BreakGlassStore.
func (s *Service) GetBreakGlass(ctx context.Context, id string) (BreakGlass, error) {
	store, err := s.breakGlass()
	if err != nil {
		return BreakGlass{}, err
	}
	return store.GetBreakGlass(ctx, id)
}

// ListBreakGlass returns the break-glass uses matching f, newest first. With
// f.Overdue it returns only open uses whose review is past due now, and
// applies f.Limit after that selection. It returns ErrUnsupported if the
// Service has no BreakGlassStore.
func (s *Service) ListBreakGlass(ctx context.Context, f BreakGlassFilter) ([]BreakGlass, error) {
	store, err := s.breakGlass()
	if err != nil {
		return nil, err
	}
	if !f.Overdue {
		return store.ListBreakGlass(ctx, f)
	}
	all, err := store.ListBreakGlass(ctx, BreakGlassFilter{Open: true, Taker: f.Taker})
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := all[:0]
	for _, bg := range all {
		if bg.Overdue(now) {
			out = append(out, bg)
		}
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// errEscalated tells UpdateBreakGlass to store nothing: the use is not (or
// no longer) an overdue review waiting for escalation.
var errEscalated = errors.New("break-glass review is not awaiting escalation")

// EscalateOverdue marks every open break-glass use whose review is overdue
// and not yet escalated with EscalatedAt = now, and returns those this call
// marked, for a background job to alert on. When several brokers run it at
// once, each use is reported by exactly one of them. Uses that could not be
// updated are reported in the joined error; the others are still returned.
// It returns ErrUnsupported if the Service has no BreakGlassStore.
func (s *Service) EscalateOverdue(ctx context.Context) ([]BreakGlass, error) {
	store, err := s.breakGlass()
	if err != nil {
		return nil, err
	}
	now := s.now()
	open, err := store.ListBreakGlass(ctx, BreakGlassFilter{Open: true})
	if err != nil {
		return nil, fmt.Errorf("escalate overdue break-glass reviews: %w", err)
	}
	var changed []BreakGlass
	var errs []error
	for _, bg := range open {
		if !bg.Overdue(now) || !bg.EscalatedAt.IsZero() {
			continue
		}
		stored, ok, err := s.EscalateOne(ctx, bg.ID)
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

// EscalateOne marks break-glass use id escalated now if its review is
// overdue and not yet escalated, and reports whether this call did (false
// when another broker, or a review, got there first). It returns
// ErrUnsupported if the Service has no BreakGlassStore.
func (s *Service) EscalateOne(ctx context.Context, id string) (BreakGlass, bool, error) {
	store, err := s.breakGlass()
	if err != nil {
		return BreakGlass{}, false, err
	}
	now := s.now()
	stored, err := store.UpdateBreakGlass(ctx, id, func(bg *BreakGlass) error {
		if !bg.Overdue(now) || !bg.EscalatedAt.IsZero() {
			return errEscalated
		}
		bg.EscalatedAt = now
		return nil
	})
	switch {
	case err == nil:
		return stored, true, nil
	case errors.Is(err, errEscalated), errors.Is(err, ErrNotFound):
		return BreakGlass{}, false, nil
	default:
		return BreakGlass{}, false, fmt.Errorf("escalate break-glass %s: %w", id, err)
	}
}
