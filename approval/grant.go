package approval

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Grant is one minting of one credential: the approved, time-boxed permission
// handed to an issuer. It holds no secret.
type Grant struct {
	// ID is unique per grant; it becomes the JWT "jti" and Vault metadata.
	ID string
	// Principal is the beneficiary: the workload the credential is for.
	Principal Principal
	// Entitlement is the entitlement's name.
	Entitlement string
	// Recipe is what to mint.
	Recipe Recipe
	// Rule is the policy rule that allowed the grant.
	Rule string
	// TTL is the credential's lifetime; never above the entitlement's MaxTTL.
	TTL time.Duration
	// IssuedAt is the decision time.
	IssuedAt time.Time
	// Expires is IssuedAt + TTL. No credential may outlive it.
	Expires time.Time
	// RequestID is the approval the grant was minted under; empty for an
	// automatic grant and for break-glass.
	RequestID string
	// NotAfter is the latest the credential may ever last, renewals
	// included: the approval window's end, or the break-glass cap. Zero for
	// automatic grants, which are bounded by MaxTTL from each renewal.
	NotAfter time.Time
	// BreakGlass reports that the grant was taken without approval under
	// the entitlement's break-glass rule (see DecideBreakGlass); it leaves
	// a review obligation behind.
	BreakGlass bool
}

// Secret is a credential's secret material. It redacts itself when printed or
// logged; convert it with string(s) only where it is handed to the workload.
type Secret string

// String returns a redacted placeholder.
func (Secret) String() string { return "[REDACTED]" }

// GoString returns a redacted placeholder.
func (Secret) GoString() string { return "[REDACTED]" }

// LogValue returns a redacted value for log/slog.
func (Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// CredentialRef identifies a credential without revealing it: a JWT's jti, a
// Vault token's accessor, a lease ID.
type CredentialRef struct {
	// Kind is what was minted.
	Kind CredentialKind
	// ID is the jti, accessor or lease ID.
	ID string
	// Expires is when the credential stops working on its own.
	Expires time.Time
}

// Credential is what an issuer returned for a grant.
type Credential struct {
	// Ref identifies the credential; it is safe to record.
	Ref CredentialRef
	// Secret is the token or JWT. Never logged, never stored.
	Secret Secret
	// Data holds the named fields of a multi-part secret, e.g. the
	// "username" and "password" of database credentials (KindVaultSecret).
	// Never logged, never stored.
	Data map[string]Secret
	// IssuedAt is when the issuer minted it.
	IssuedAt time.Time
}

// Decide checks, at now, whether principal may be granted the named
// entitlement for ttl (zero means the entitlement's MaxTTL) and returns the
// grant to mint, with ID id.
//
// It returns ErrUnknownEntitlement, ErrNotEligible, ErrTTLTooLong (the message
// names the limit), ErrConditionFalse, ErrUnsupported for an approval mode
// this version cannot decide alone, or ErrInvalid for a negative ttl. The
// returned rule names the requester rule that matched, also on errors after
// eligibility was established, so denials can be recorded precisely.
func (p *Policy) Decide(ctx context.Context, id string, principal Principal, name string, ttl time.Duration, now time.Time) (Grant, error) {
	e, err := p.Lookup(name)
	if err != nil {
		return Grant{}, err
	}
	rule, ok := e.Eligible(principal)
	if !ok {
		return Grant{}, fmt.Errorf("%s may not request %q: %w", principal, name, ErrNotEligible)
	}
	g := Grant{ID: id, Principal: principal, Entitlement: name, Recipe: e.Recipe, Rule: rule, IssuedAt: now}
	switch {
	case ttl < 0:
		return g, fmt.Errorf("ttl %s is negative: %w", ttl, ErrInvalid)
	case ttl == 0:
		ttl = e.MaxTTL
	case ttl > e.MaxTTL:
		return g, fmt.Errorf("ttl %s for %q is above its max_ttl %s: %w", ttl, name, e.MaxTTL, ErrTTLTooLong)
	}
	g.TTL = ttl
	g.Expires = now.Add(ttl)
	if e.Mode != ModeAuto {
		return g, fmt.Errorf("entitlement %q needs approval mode %q: %w", name, e.Mode, ErrUnsupported)
	}
	if e.Condition != nil {
		ok, err := e.Condition.Eval(ctx, Facts{Principal: principal, Entitlement: name, TTL: ttl, Now: now})
		if err != nil {
			return g, fmt.Errorf("evaluate condition of %q: %w", name, err)
		}
		if !ok {
			return g, fmt.Errorf("condition %q of %q is false: %w", e.Condition.String(), name, ErrConditionFalse)
		}
	}
	return g, nil
}
