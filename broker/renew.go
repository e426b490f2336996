package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Ledger actions for a holder's renewals and releases.
const (
	ActionRenew   = "renew"
	ActionRelease = "release"
)

// GrantLookup finds the newest ledger entry about a credential.
type GrantLookup interface {
	GrantEntry(ctx context.Context, grantID string) (audit.Entry, bool, error)
}

// Renewer is implemented by issuers whose credentials can be extended (Vault
// leases). Renew returns the new expiry; it never extends past increment.
type Renewer interface {
	Renew(ctx context.Context, ref approval.CredentialRef, increment time.Duration) (time.Time, error)
}

// errEnded marks a credential that was released, revoked or has expired.
var errEnded = errors.New("credential has ended")

// notAfterKey is the ledger detail holding the latest a credential may ever
// last: its approval window's end, or its break-glass cap.
const notAfterKey = "not_after"

// RenewCredential extends a credential the caller holds, within its limits.
func (s *Server) RenewCredential(ctx context.Context, req *brokerv1.RenewCredentialRequest) (*brokerv1.RenewCredentialResponse, error) {
	held, issuer, err := s.held(ctx, req.GetGrantId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	renewer, ok := issuer.(Renewer)
	if !ok {
		return nil, s.toStatus(ctx, fmt.Errorf("%s credentials cannot be renewed; ask for a new one: %w", held.CredentialKind, approval.ErrUnsupported))
	}
	now := s.now()
	e, err := s.policy.Load().Lookup(held.Entitlement)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	limit, why := now.Add(e.MaxTTL), fmt.Sprintf("max_ttl %s from now", e.MaxTTL)
	if na, err := time.Parse(time.RFC3339Nano, held.Details[notAfterKey]); err == nil && na.Before(limit) {
		limit, why = na, "the end of its approval window or break-glass cap at "+na.Format(time.RFC3339)
	}
	if id := held.Details["request_id"]; id != "" {
		if r, err := s.approvals.Get(ctx, id); err != nil || r.State != approval.StateApproved {
			return nil, s.toStatus(ctx, fmt.Errorf("request %s is no longer approved: %w", id, approval.ErrNotApproved))
		}
	}
	ttl := limit.Sub(now)
	if req.GetTtl() != nil {
		if ttl = req.GetTtl().AsDuration(); ttl <= 0 {
			return nil, s.toStatus(ctx, fmt.Errorf("ttl must be positive: %w", errBadRequest))
		}
		if now.Add(ttl).After(limit) {
			return nil, s.toStatus(ctx, fmt.Errorf("ttl %s would pass %s: %w", ttl, why, approval.ErrTTLTooLong))
		}
	}
	if ttl < time.Second {
		return nil, s.toStatus(ctx, fmt.Errorf("nothing left to renew before %s: %w", why, approval.ErrWindowEnded))
	}
	ref := approval.CredentialRef{Kind: approval.CredentialKind(held.CredentialKind), ID: held.CredentialRef, Expires: held.Expires}
	expires, err := renewer.Renew(ctx, ref, ttl)
	if err != nil {
		return nil, s.toStatus(ctx, fmt.Errorf("renew %s: %w: %w", held.GrantID, errIssuer, err))
	}
	if expires.After(limit) {
		// The issuer must never extend past what was asked; end it rather
		// than let it outlive its limit.
		s.revoke(ctx, issuer, ref)
		return nil, s.toStatus(ctx, fmt.Errorf("issuer extended %s past its limit; revoked: %w", held.GrantID, errIssuer))
	}
	ev := heldEvent(ActionRenew, "renewed", held, expires)
	ev.TTL = ttl
	if _, err := s.record(context.WithoutCancel(ctx), ev); err != nil {
		return nil, s.toStatus(ctx, fmt.Errorf("record renewal of %s: %w: %w", held.GrantID, errLedger, err))
	}
	return &brokerv1.RenewCredentialResponse{ExpiresAt: ts(expires)}, nil
}

// ReleaseCredential ends a credential the caller holds.
func (s *Server) ReleaseCredential(ctx context.Context, req *brokerv1.ReleaseCredentialRequest) (*brokerv1.ReleaseCredentialResponse, error) {
	held, issuer, err := s.held(ctx, req.GetGrantId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	ref := approval.CredentialRef{Kind: approval.CredentialKind(held.CredentialKind), ID: held.CredentialRef, Expires: held.Expires}
	if err := issuer.Revoke(ctx, ref); err != nil {
		return nil, s.toStatus(ctx, fmt.Errorf("release %s: %w: %w", held.GrantID, errIssuer, err))
	}
	if _, err := s.record(context.WithoutCancel(ctx), heldEvent(ActionRelease, "released", held, held.Expires)); err != nil {
		return nil, s.toStatus(ctx, fmt.Errorf("record release of %s: %w: %w", held.GrantID, errLedger, err))
	}
	s.log.InfoContext(ctx, "credential released", slog.String("grant_id", held.GrantID), slog.String("credential_ref", held.CredentialRef))
	return &brokerv1.ReleaseCredentialResponse{}, nil
}

// held returns the newest ledger entry of a live credential the calling
// workload holds, and its issuer. Someone else's credential is NotFound.
func (s *Server) held(ctx context.Context, grantID string) (audit.Entry, Issuer, error) {
	id, ok := workloadFrom(ctx)
	if !ok {
		return audit.Entry{}, nil, fmt.Errorf("only the workload holding a credential may renew or release it: %w", errNotWorkload)
	}
	if s.grants == nil {
		return audit.Entry{}, nil, fmt.Errorf("renew and release are not configured on this broker: %w", approval.ErrUnsupported)
	}
	notFound := fmt.Errorf("credential of grant %q: %w", truncate(grantID, 64), approval.ErrNotFound)
	e, ok, err := s.grants.GrantEntry(ctx, grantID)
	switch {
	case err != nil:
		return audit.Entry{}, nil, fmt.Errorf("look up grant: %w: %w", errLedger, err)
	case !ok || e.Subject != id.String():
		return audit.Entry{}, nil, notFound
	}
	switch e.Action {
	case ActionGrant, ActionBreakGlass, ActionRenew:
	default:
		return audit.Entry{}, nil, fmt.Errorf("grant %s: %s (%s): %w", grantID, errEnded, e.Action, approval.ErrResolved)
	}
	if !e.Expires.After(s.now()) {
		return audit.Entry{}, nil, fmt.Errorf("grant %s expired at %s: %w", grantID, e.Expires.Format(time.RFC3339), approval.ErrResolved)
	}
	issuer := s.issuers[approval.CredentialKind(e.CredentialKind)]
	if issuer == nil {
		return audit.Entry{}, nil, fmt.Errorf("credential kind %q: %w", e.CredentialKind, errNoIssuer)
	}
	return e, issuer, nil
}

// heldEvent records an action on a held credential, keeping the details
// (request, limit, break-glass mark) that later renewals need.
func heldEvent(action, outcome string, held audit.Entry, expires time.Time) audit.Event {
	return audit.Event{
		Action: action, Actor: held.Subject, Subject: held.Subject, Entitlement: held.Entitlement, Rule: held.Rule,
		Outcome: outcome, GrantID: held.GrantID, CredentialKind: held.CredentialKind, CredentialRef: held.CredentialRef,
		Expires: expires, Details: held.Details,
	}
}
