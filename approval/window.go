package approval

import (
	"context"
	"fmt"
	"time"
)

// DecideUnder checks, at now, whether a credential may be minted under the
// approved request r for ttl (zero means as long as allowed) and returns the
// grant to mint, with ID grantID. The grant never outlives the approval
// window nor the entitlement's MaxTTL (reliability cases T15 and T32).
//
// It returns ErrNotApproved, naming r's state, unless r is approved;
// ErrWindowEnded once now reaches r.WindowEnd; ErrUnknownEntitlement or
// ErrNotEligible if the policy in force no longer has the entitlement or no
// longer covers the beneficiary; ErrInvalid for a negative ttl; and
// ErrTTLTooLong, naming the limit, for a ttl above max_ttl or above the time
// left in the window. A ttl is refused, never capped; only a zero ttl is
// fitted to the limits.
func (p *Policy) DecideUnder(ctx context.Context, grantID string, r Request, ttl time.Duration, now time.Time) (Grant, error) {
	if r.State != StateApproved {
		return Grant{}, fmt.Errorf("credential under request %s: request is %s: %w", r.ID, r.State, ErrNotApproved)
	}
	if !now.Before(r.WindowEnd) {
		return Grant{}, fmt.Errorf("credential under request %s: window ended at %s: %w", r.ID, r.WindowEnd.Format(time.RFC3339), ErrWindowEnded)
	}
	e, err := p.Lookup(r.Entitlement)
	if err != nil {
		return Grant{}, fmt.Errorf("credential under request %s: %w", r.ID, err)
	}
	if _, ok := e.Eligible(r.Beneficiary); !ok {
		return Grant{}, fmt.Errorf("credential under request %s: %s may no longer request %q: %w", r.ID, r.Beneficiary, e.Name, ErrNotEligible)
	}
	left := r.WindowEnd.Sub(now)
	switch {
	case ttl < 0:
		return Grant{}, fmt.Errorf("ttl %s is negative: %w", ttl, ErrInvalid)
	case ttl == 0:
		ttl = min(e.MaxTTL, left)
	case ttl > e.MaxTTL:
		return Grant{}, fmt.Errorf("ttl %s for %q is above its max_ttl %s: %w", ttl, e.Name, e.MaxTTL, ErrTTLTooLong)
	case ttl > left:
		return Grant{}, fmt.Errorf("ttl %s for %q is longer than the %s left before request %s's window ends at %s: %w",
			ttl, e.Name, left, r.ID, r.WindowEnd.Format(time.RFC3339), ErrTTLTooLong)
	}
	if ttl <= 0 {
		// Only an entitlement without a max_ttl gets here; deny.
		return Grant{}, fmt.Errorf("entitlement %q has no positive max_ttl", e.Name)
	}
	return Grant{
		ID:          grantID,
		Principal:   r.Beneficiary,
		Entitlement: e.Name,
		Recipe:      e.Recipe,
		Rule:        r.Rule,
		TTL:         ttl,
		IssuedAt:    now,
		Expires:     now.Add(ttl),
		RequestID:   r.ID,
		NotAfter:    r.WindowEnd,
	}, nil
}

// EffectiveTTL is the longest a credential minted under an approval for
// duration could live: the smallest of e's MaxTTL, duration and, when
// positive, issuerLimit (the issuer's own cap, such as a Vault role's
// max_ttl). It is what approvers are shown, so nobody is surprised later.
// A nil entitlement allows nothing (0).
func EffectiveTTL(e *Entitlement, duration, issuerLimit time.Duration) time.Duration {
	if e == nil {
		return 0
	}
	ttl := min(e.MaxTTL, duration)
	if issuerLimit > 0 {
		ttl = min(ttl, issuerLimit)
	}
	return ttl
}
