package approval

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MaxIncidentLen bounds a break-glass incident reference, in bytes.
const MaxIncidentLen = 256

// BreakGlassRule is an entitlement's break-glass policy: who may take it at
// once, without approval, for how long, and who must review each use
// afterwards.
type BreakGlassRule struct {
	// Workloads are the SPIFFE ID patterns of workloads that may take it.
	Workloads []Requester
	// Groups are the groups whose members (people) may take it.
	Groups []string
	// MaxTTL is the longest a break-glass credential may live; shorter than
	// the entitlement's MaxTTL.
	MaxTTL time.Duration
	// ReviewWithin is how long after the use its review is due.
	ReviewWithin time.Duration
	// ReviewerGroups are the groups whose members may review a use.
	ReviewerGroups []string
	// MinReviewers is how many distinct reviewers must find a use
	// justified to close its review.
	MinReviewers int
	// BlockWhileOverdue stops a principal from breaking glass again, under
	// this entitlement, while any of their earlier uses (under any
	// entitlement) has an overdue review.
	BlockWhileOverdue bool
}

// Allows reports whether taker may break glass under the rule: a workload
// must match one of Workloads; a person (any other principal) must be in
// one of Groups, given their groups.
func (r *BreakGlassRule) Allows(taker Principal, groups []string) bool {
	if r == nil || taker == "" {
		return false
	}
	if taker.IsWorkload() {
		return slices.ContainsFunc(r.Workloads, func(w Requester) bool { return w.Matches(taker) })
	}
	return intersects(r.Groups, groups)
}

// BreakGlassState is where a break-glass use's review is:
//
//	open ──ApplyBreakGlassReview (unjustified, or MinReviewers justified)──▶ closed
//
// Closed is final.
type BreakGlassState string

// Break-glass states.
const (
	// BreakGlassOpen means the use still awaits its review.
	BreakGlassOpen BreakGlassState = "open"
	// BreakGlassClosed means the review is done; Outcome says how it ended.
	BreakGlassClosed BreakGlassState = "closed"
)

// ReviewOutcome is a reviewer's verdict on a break-glass use, and the
// outcome of a closed review.
type ReviewOutcome string

// Review outcomes.
const (
	// OutcomeJustified says the use was warranted.
	OutcomeJustified ReviewOutcome = "justified"
	// OutcomeUnjustified says it was not; one such review closes the use.
	OutcomeUnjustified ReviewOutcome = "unjustified"
)

// BreakGlassReview is one person's review of a break-glass use.
type BreakGlassReview struct {
	// Reviewer is the authenticated person ("oidc:<issuer>#<subject>").
	Reviewer Principal
	// Groups are the reviewer's groups at the time of the review.
	Groups []string
	// Outcome is justified or unjustified.
	Outcome ReviewOutcome
	// Notes are the reviewer's findings.
	Notes string
	// At is when the review was made.
	At time.Time
}

// BreakGlass is one use of break-glass and the review obligation it leaves.
type BreakGlass struct {
	// ID is unique ("bg_…").
	ID string
	// Taker is who broke glass: a workload or a person.
	Taker Principal
	// Beneficiary is whom the credential is for: the taker itself, or, for a
	// person, a workload they broke glass for.
	Beneficiary Principal
	// Entitlement is the entitlement's name.
	Entitlement string
	// Reason is the taker's justification.
	Reason string
	// Incident is an optional incident reference.
	Incident string
	// GrantID is the grant minted; empty until RecordBreakGlassGrant.
	GrantID string
	// Credential identifies what was minted; zero until RecordBreakGlassGrant.
	Credential CredentialRef
	// TakenAt is when glass was broken.
	TakenAt time.Time
	// ReviewDue is when the review must be closed by.
	ReviewDue time.Time
	// State is open until the review closes.
	State BreakGlassState
	// Reviews are the reviews so far, in order.
	Reviews []BreakGlassReview
	// Outcome is how the review ended; empty while open.
	Outcome ReviewOutcome
	// ClosedAt is when the review closed; zero while open.
	ClosedAt time.Time
	// EscalatedAt is when the overdue review was escalated; set once, by
	// Service.EscalateOverdue.
	EscalatedAt time.Time
	// Version is the store's compare-and-swap version; the domain never sets it.
	Version uint64
}

// Overdue reports whether the review is still open at or after its due time.
func (bg BreakGlass) Overdue(now time.Time) bool {
	return bg.State == BreakGlassOpen && !now.Before(bg.ReviewDue)
}

// BreakGlassInput is what a principal asks for when breaking glass.
type BreakGlassInput struct {
	// ID is the new use's ID; Service.TakeBreakGlass fills it in when empty.
	ID string
	// Taker is the authenticated caller: a workload or a person.
	Taker Principal
	// TakerGroups are a person's groups (from their ID token); ignored for
	// a workload.
	TakerGroups []string
	// Beneficiary is whom the credential is for; empty means the taker. A
	// person may name a workload; a workload only itself.
	Beneficiary Principal
	// Entitlement is the entitlement's name.
	Entitlement string
	// Reason is the justification; required.
	Reason string
	// Incident is an optional incident reference.
	Incident string
	// TTL is the credential's lifetime; zero means the rule's MaxTTL.
	TTL time.Duration
}

// DecideBreakGlass checks, at now, whether in.Taker may break glass for the
// named entitlement and returns the open break-glass use, due for review
// ReviewWithin after now, and the grant to mint, with ID grantID. The grant
// has BreakGlass set, no RequestID, Rule "entitlements.<name>.break_glass"
// and Principal the beneficiary. It touches no request: break-glass never
// counts as an approval.
//
// It returns ErrUnknownEntitlement; ErrBreakGlassNotAllowed if the
// entitlement has no break-glass rule; ErrInvalid for an empty ID or taker,
// a workload naming another beneficiary, a person naming another person, a
// missing reason, a reason (1024 bytes) or incident (256 bytes) that is too
// long or not printable, or a negative TTL; ErrNotEligible if the taker is
// not allowed by the rule or a workload beneficiary matches none of the
// entitlement's requester rules; and ErrTTLTooLong, naming the cap, for a
// TTL above the rule's MaxTTL. A TTL is refused, never capped; only zero is
// fitted to the cap.
func (p *Policy) DecideBreakGlass(ctx context.Context, grantID string, in BreakGlassInput, now time.Time) (BreakGlass, Grant, error) {
	e, err := p.Lookup(in.Entitlement)
	if err != nil {
		return BreakGlass{}, Grant{}, fmt.Errorf("break glass: %w", err)
	}
	rule := e.BreakGlass
	if rule == nil {
		return BreakGlass{}, Grant{}, fmt.Errorf("entitlement %q does not allow break-glass: %w", e.Name, ErrBreakGlassNotAllowed)
	}
	if in.ID == "" || grantID == "" {
		return BreakGlass{}, Grant{}, fmt.Errorf("break glass on %q: empty break-glass or grant id: %w", e.Name, ErrInvalid)
	}
	if in.Taker == "" {
		return BreakGlass{}, Grant{}, fmt.Errorf("break glass on %q: no taker: %w", e.Name, ErrInvalid)
	}
	if !rule.Allows(in.Taker, in.TakerGroups) {
		if in.Taker.IsWorkload() {
			return BreakGlass{}, Grant{}, fmt.Errorf("%s may not break glass on %q (no break_glass.allowed pattern matches): %w", in.Taker, e.Name, ErrNotEligible)
		}
		return BreakGlass{}, Grant{}, fmt.Errorf("%s may not break glass on %q (in none of the groups %s): %w", in.Taker, e.Name, strings.Join(rule.Groups, ", "), ErrNotEligible)
	}
	beneficiary, err := breakGlassBeneficiary(in, e)
	if err != nil {
		return BreakGlass{}, Grant{}, err
	}
	if err := checkText("reason", in.Reason, DefaultMaxReasonLen); err != nil {
		return BreakGlass{}, Grant{}, fmt.Errorf("break glass on %q: %w", e.Name, err)
	}
	if strings.TrimSpace(in.Reason) == "" {
		return BreakGlass{}, Grant{}, fmt.Errorf("break glass on %q: a reason is required: %w", e.Name, ErrInvalid)
	}
	if err := checkText("incident", in.Incident, MaxIncidentLen); err != nil {
		return BreakGlass{}, Grant{}, fmt.Errorf("break glass on %q: %w", e.Name, err)
	}
	limit := rule.MaxTTL
	if e.MaxTTL > 0 {
		limit = min(limit, e.MaxTTL)
	}
	ttl := in.TTL
	switch {
	case ttl < 0:
		return BreakGlass{}, Grant{}, fmt.Errorf("ttl %s is negative: %w", ttl, ErrInvalid)
	case ttl == 0:
		ttl = limit
	case ttl > limit:
		return BreakGlass{}, Grant{}, fmt.Errorf("ttl %s for %q is above its break-glass max_ttl %s: %w", ttl, e.Name, limit, ErrTTLTooLong)
	}
	if ttl <= 0 || rule.ReviewWithin <= 0 {
		// Only a rule built without the loader gets here; deny.
		return BreakGlass{}, Grant{}, fmt.Errorf("entitlement %q: break-glass rule has no positive max_ttl or review_within", e.Name)
	}
	bg := BreakGlass{
		ID:          in.ID,
		Taker:       in.Taker,
		Beneficiary: beneficiary,
		Entitlement: e.Name,
		Reason:      in.Reason,
		Incident:    in.Incident,
		TakenAt:     now,
		ReviewDue:   now.Add(rule.ReviewWithin),
		State:       BreakGlassOpen,
	}
	g := Grant{
		ID:          grantID,
		Principal:   beneficiary,
		Entitlement: e.Name,
		Recipe:      e.Recipe,
		Rule:        fmt.Sprintf("entitlements.%s.break_glass", e.Name),
		TTL:         ttl,
		IssuedAt:    now,
		Expires:     now.Add(ttl),
		BreakGlass:  true,
		NotAfter:    now.Add(rule.MaxTTL),
	}
	return bg, g, nil
}

// breakGlassBeneficiary returns whom a break-glass credential is for: the
// taker when in names nobody else. A workload breaks glass only for itself
// and a person for themselves or a workload; a workload beneficiary must be
// covered by one of e's requester rules, since break-glass skips approval,
// not eligibility.
func breakGlassBeneficiary(in BreakGlassInput, e *Entitlement) (Principal, error) {
	b := in.Beneficiary
	if b == "" {
		b = in.Taker
	}
	switch {
	case in.Taker.IsWorkload() && b != in.Taker:
		return "", fmt.Errorf("break glass on %q: workload %s may break glass only for itself, not for %s: %w", e.Name, in.Taker, b, ErrInvalid)
	case !b.IsWorkload() && b != in.Taker:
		return "", fmt.Errorf("break glass on %q: %s may break glass for themselves or a workload, not for %s: %w", e.Name, in.Taker, b, ErrInvalid)
	case b.IsWorkload():
		if _, ok := e.Eligible(b); !ok {
			return "", fmt.Errorf("break glass on %q: %s is not a requester of it: %w", e.Name, b, ErrNotEligible)
		}
	}
	return b, nil
}
