package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Ledger actions and outcomes written by the grant pipeline.
const (
	ActionGrant       = "grant"
	ActionDeny        = "deny"
	ActionGrantFailed = "grant_failed"
	ActionRevoke      = "revoke"
)

var entitlementName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// IssueCredential runs the grant pipeline: authenticate, decide, issue,
// record, respond. See the package documentation for its failure rules.
func (s *Server) IssueCredential(ctx context.Context, req *brokerv1.IssueCredentialRequest) (*brokerv1.IssueCredentialResponse, error) {
	start := s.now()
	cred, g, outcome, err := s.issue(ctx, req)
	s.metrics.observeGrant(g.Entitlement, outcome, s.now().Sub(start))
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &brokerv1.IssueCredentialResponse{Credential: credentialToProto(cred, g.ID, g.Entitlement, false)}, nil
}

// issue returns the credential, the grant (possibly partial, for metrics) and
// an outcome label.
func (s *Server) issue(ctx context.Context, req *brokerv1.IssueCredentialRequest) (approval.Credential, approval.Grant, string, error) {
	id, ok := workloadFrom(ctx)
	if !ok {
		return approval.Credential{}, approval.Grant{}, "unauthenticated", fmt.Errorf("credentials are for workloads: %w", errNotWorkload)
	}
	principal := approval.Principal(id.String())
	ttl, err := requestTTL(req)
	if err != nil {
		return s.deny(ctx, principal, approval.Grant{}, err)
	}
	if !entitlementName.MatchString(req.GetEntitlement()) {
		return s.deny(ctx, principal, approval.Grant{}, fmt.Errorf("entitlement name %q is not a valid name: %w", truncate(req.GetEntitlement(), 64), errBadRequest))
	}
	g, err := s.decide(ctx, principal, req.GetEntitlement(), ttl)
	if err != nil {
		g.Entitlement = req.GetEntitlement()
		return s.deny(ctx, principal, g, err)
	}
	issuer := s.issuers[g.Recipe.Kind]
	if issuer == nil {
		return s.deny(ctx, principal, g, fmt.Errorf("entitlement %q: credential kind %q: %w", g.Entitlement, g.Recipe.Kind, errNoIssuer))
	}

	m, err := s.beginMint(ctx, issuer, g)
	if err != nil {
		return approval.Credential{}, g, "ledger_error", err
	}
	defer m.end()
	cred, err := issuer.Issue(ctx, g)
	if err == nil && m.crashed(g) {
		return approval.Credential{}, g, "crashed", errCrashed
	}
	if err != nil {
		err = fmt.Errorf("issue %s credential for grant %s: %w: %w", g.Recipe.Kind, g.ID, errIssuer, err)
		// Record that nothing was issued. The caller's context may be done;
		// the record must still be written.
		s.record(context.WithoutCancel(ctx), grantEvent(ActionGrantFailed, "error", principal, g, approval.Credential{}, reasonOf(err)))
		return approval.Credential{}, g, "error", err
	}
	if cred.Ref.Expires.After(g.Expires) {
		// Fail closed on an issuer that outlived the grant (a bug or a Vault
		// misconfiguration): never hand it out.
		err := fmt.Errorf("issuer returned a credential expiring %s, after the grant's end %s: %w", cred.Ref.Expires, g.Expires, errIssuer)
		rec, outcome := cred, "over_grant_revoked"
		if s.revoke(ctx, issuer, cred.Ref) {
			m.settle(ctx)
		} else {
			// Not revoked: the record must not name the credential, or the
			// reconciler would take the grant as recorded and clear the
			// intent; left as it is, it finds the orphan and revokes it (T1).
			rec, outcome = approval.Credential{}, "over_grant_revoke_failed"
		}
		s.record(context.WithoutCancel(ctx), grantEvent(ActionGrantFailed, outcome, principal, g, rec, reasonOf(err)))
		return approval.Credential{}, g, "error", err
	}

	if g.RequestID != "" {
		// Inventory first, so revoking the approval finds this credential.
		// RecordGrant re-reads the approval afterwards and refuses if it was
		// revoked meanwhile (T23): then the credential is revoked at once.
		rec := approval.GrantRecord{GrantID: g.ID, RequestID: g.RequestID, Ref: cred.Ref, IssuedAt: cred.IssuedAt}
		if err := s.approvals.RecordGrant(context.WithoutCancel(ctx), rec); err != nil {
			rec, outcome := cred, "revoked"
			if s.revoke(ctx, issuer, cred.Ref) {
				m.settle(ctx)
			} else {
				rec, outcome = approval.Credential{}, "revoke_failed" // left to the reconciler, as above
			}
			if errors.Is(err, approval.ErrResolved) {
				s.record(context.WithoutCancel(ctx), grantEvent(ActionRevoke, outcome, principal, g, rec, "approval ended while the credential was minted"))
				return approval.Credential{}, g, "approval_ended", fmt.Errorf("request %s: %w", g.RequestID, err)
			}
			return approval.Credential{}, g, "store_error", fmt.Errorf("record grant %s under %s: %w: %w", g.ID, g.RequestID, errLedger, err)
		}
	}

	// The credential exists now. Record it durably before it may leave; a
	// cancelled caller must not leave an unrecorded credential behind.
	if _, err := s.record(context.WithoutCancel(ctx), grantEvent(ActionGrant, "granted", principal, g, cred, "")); err != nil {
		if s.revoke(ctx, issuer, cred.Ref) {
			m.settle(ctx)
		}
		return approval.Credential{}, g, "ledger_error", fmt.Errorf("record grant %s: %w: %w", g.ID, errLedger, err)
	}
	// The credential is in the ledger; revoking it from now on is the
	// ledger's and the revocation queue's business, not the reconciler's.
	m.settle(ctx)
	if err := ctx.Err(); err != nil {
		// The caller gave up while we recorded: nobody will receive the
		// credential, so end it and say so in the ledger.
		s.revoke(ctx, issuer, cred.Ref)
		s.record(context.WithoutCancel(ctx), grantEvent(ActionRevoke, "revoked", principal, g, cred, "caller gone before delivery"))
		return approval.Credential{}, g, "abandoned", err
	}
	s.log.InfoContext(ctx, "credential issued",
		slog.String("grant_id", g.ID),
		slog.String("principal", principal.String()),
		slog.String("entitlement", g.Entitlement),
		slog.String("credential_ref", cred.Ref.ID),
		slog.Duration("ttl", g.TTL),
		slog.String("request_id", requestIDFrom(ctx)))
	return cred, g, "granted", nil
}

// decide returns the grant to mint: by policy alone for automatic
// entitlements, under a live approval for the others.
func (s *Server) decide(ctx context.Context, p approval.Principal, name string, ttl time.Duration) (approval.Grant, error) {
	pol := s.policy.Load()
	e, err := pol.Lookup(name)
	if err != nil {
		return approval.Grant{}, err
	}
	if e.Mode != approval.ModeApprovers {
		return pol.Decide(ctx, s.newID(), p, name, ttl, s.now())
	}
	if rule, ok := e.Eligible(p); !ok {
		return approval.Grant{Rule: rule}, fmt.Errorf("%s may not request %q: %w", p, name, approval.ErrNotEligible)
	}
	return s.approvals.Authorize(ctx, p, name, ttl, s.newID())
}

// deny records a refusal and returns err for the caller. If the refusal
// cannot be recorded the caller gets UNAVAILABLE: still a refusal, and an
// honest one.
func (s *Server) deny(ctx context.Context, p approval.Principal, g approval.Grant, err error) (approval.Credential, approval.Grant, string, error) {
	outcome := outcomeOf(err)
	if _, lerr := s.record(context.WithoutCancel(ctx), grantEvent(ActionDeny, outcome, p, g, approval.Credential{}, reasonOf(err))); lerr != nil {
		return approval.Credential{}, g, "ledger_error", fmt.Errorf("record denial (%v): %w: %w", err, errLedger, lerr)
	}
	s.log.InfoContext(ctx, "credential denied",
		slog.String("principal", p.String()),
		slog.String("entitlement", g.Entitlement),
		slog.String("outcome", outcome),
		slog.String("request_id", requestIDFrom(ctx)))
	return approval.Credential{}, g, outcome, err
}

func (s *Server) record(ctx context.Context, e audit.Event) (audit.Entry, error) {
	e = s.withPolicy(e)
	start := s.now()
	entry, err := s.ledger.Append(ctx, e)
	s.metrics.observeLedger(err, s.now().Sub(start))
	if err != nil {
		s.log.ErrorContext(ctx, "ledger append failed", slog.String("action", e.Action), slog.String("grant_id", e.GrantID), slog.Any("error", err))
	}
	return entry, err
}

// revoke ends a credential that must not be delivered and reports whether
// it succeeded. It uses its own deadline: the caller's context may already
// be done.
func (s *Server) revoke(ctx context.Context, issuer Issuer, ref approval.CredentialRef) bool {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.revokeTimeout)
	defer cancel()
	if err := issuer.Revoke(rctx, ref); err != nil {
		// The reference is not a secret; an operator can revoke it by hand.
		// At worst the credential expires at its TTL.
		s.log.ErrorContext(ctx, "revoke of undelivered credential failed",
			slog.String("credential_kind", string(ref.Kind)),
			slog.String("credential_ref", ref.ID),
			slog.Time("expires", ref.Expires),
			slog.Any("error", err))
		return false
	}
	return true
}

func grantEvent(action, outcome string, p approval.Principal, g approval.Grant, c approval.Credential, reason string) audit.Event {
	var details map[string]string
	if g.RequestID != "" {
		details = map[string]string{"request_id": g.RequestID}
		if !g.NotAfter.IsZero() {
			details[notAfterKey] = g.NotAfter.UTC().Format(time.RFC3339Nano)
		}
	}
	return audit.Event{
		Details:        details,
		Action:         action,
		Actor:          p.String(),
		Subject:        p.String(),
		Entitlement:    g.Entitlement,
		Rule:           g.Rule,
		Outcome:        outcome,
		Reason:         reason,
		GrantID:        g.ID,
		TTL:            g.TTL,
		CredentialKind: string(c.Ref.Kind),
		CredentialRef:  c.Ref.ID,
		Expires:        c.Ref.Expires,
	}
}

func requestTTL(req *brokerv1.IssueCredentialRequest) (time.Duration, error) {
	if req.GetTtl() == nil {
		return 0, nil
	}
	if err := req.GetTtl().CheckValid(); err != nil {
		return 0, fmt.Errorf("ttl: %v: %w", err, errBadRequest)
	}
	ttl := req.GetTtl().AsDuration()
	if ttl < 0 {
		return 0, fmt.Errorf("ttl %s is negative: %w", ttl, errBadRequest)
	}
	return ttl, nil
}

// outcomeOf names a refusal for the ledger and metrics.
func outcomeOf(err error) string {
	switch {
	case errors.Is(err, approval.ErrUnknownEntitlement):
		return "unknown_entitlement"
	case errors.Is(err, errLimit):
		return "limit_exceeded"
	case errors.Is(err, approval.ErrNotEligible):
		return "not_eligible"
	case errors.Is(err, approval.ErrConditionFalse):
		return "condition_false"
	case errors.Is(err, approval.ErrTTLTooLong):
		return "ttl_too_long"
	case errors.Is(err, approval.ErrInvalid), errors.Is(err, errBadRequest):
		return "invalid_request"
	case errors.Is(err, approval.ErrUnsupported), errors.Is(err, errNoIssuer):
		return "unsupported"
	case errors.Is(err, approval.ErrNotApproved):
		return "not_approved"
	case errors.Is(err, approval.ErrWindowEnded):
		return "window_ended"
	case errors.Is(err, approval.ErrReviewOverdue):
		return "review_overdue"
	case errors.Is(err, approval.ErrBreakGlassNotAllowed):
		return "break_glass_not_allowed"
	case errors.Is(err, approval.ErrSelfApproval):
		return "self_review"
	case errors.Is(err, approval.ErrAlreadyReviewed):
		return "already_reviewed"
	case errors.Is(err, approval.ErrNotApprover):
		return "not_approver"
	case errors.Is(err, approval.ErrResolved):
		return "already_resolved"
	default:
		return "error"
	}
}

// reasonOf bounds a reason recorded in the ledger.
func reasonOf(err error) string { return truncate(err.Error(), 512) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func kindToProto(k approval.CredentialKind) brokerv1.CredentialKind {
	switch k {
	case approval.KindJWT:
		return brokerv1.CredentialKind_CREDENTIAL_KIND_JWT
	case approval.KindVaultToken:
		return brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_TOKEN
	case approval.KindVaultSecret:
		return brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_SECRET
	case approval.KindVaultTransitJWT:
		return brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_TRANSIT_JWT
	default:
		return brokerv1.CredentialKind_CREDENTIAL_KIND_UNSPECIFIED
	}
}
