package approval

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// CredentialKind names what an issuer mints.
type CredentialKind string

// Credential kinds.
const (
	// KindJWT is a JWT signed by the broker's local key.
	KindJWT CredentialKind = "jwt"
	// KindVaultToken is a Vault token created from a token role.
	KindVaultToken CredentialKind = "vault_token"
	// KindVaultSecret is a dynamic secret read from a Vault path with a
	// lease, e.g. database credentials from database/creds/<role>.
	KindVaultSecret CredentialKind = "vault_secret"
	// KindVaultTransitJWT is a JWT signed by a Vault transit key; the
	// private key never leaves Vault.
	KindVaultTransitJWT CredentialKind = "vault_transit_jwt"
)

// Recipe says what to mint for an entitlement. Exactly one kind is set.
type Recipe struct {
	// Kind selects the issuer.
	Kind CredentialKind
	// Audience is the JWT "aud" claim (KindJWT, KindVaultTransitJWT).
	Audience []string
	// Role is the Vault token role: auth/token/create/<Role> (KindVaultToken).
	Role string
	// Path is the Vault path a dynamic secret is read from, e.g.
	// "database/creds/orders-ro" (KindVaultSecret).
	Path string
	// TransitKey is the name of the Vault transit key that signs the JWT
	// (KindVaultTransitJWT).
	TransitKey string
}

// Mode is how requests for an entitlement are approved.
type Mode string

// Approval modes.
const (
	// ModeAuto approves every eligible request, subject to an optional condition.
	ModeAuto Mode = "auto"
	// ModeApprovers needs people to approve: every Stage of the entitlement
	// must be satisfied before credentials may be minted (see ApplyReview).
	ModeApprovers Mode = "approvers"
)

// Facts are what a condition sees about one request.
type Facts struct {
	// Principal is the beneficiary of the grant.
	Principal Principal
	// Entitlement is the entitlement's name.
	Entitlement string
	// TTL is the effective TTL of the grant.
	TTL time.Duration
	// Now is the decision time.
	Now time.Time
}

// Condition is a compiled policy condition (a CEL expression in the policy file).
type Condition interface {
	// Eval reports whether the condition holds for f.
	Eval(ctx context.Context, f Facts) (bool, error)
	// String returns the source expression.
	String() string
}

// Entitlement is a named, owned thing that can be granted.
type Entitlement struct {
	// Name is unique within the policy.
	Name string
	// Owner is who answers for the entitlement (a team or person).
	Owner string
	// Purpose says why it exists.
	Purpose string
	// Recipe is what gets minted.
	Recipe Recipe
	// MaxTTL is the longest a credential may live.
	MaxTTL time.Duration
	// Requesters are the eligibility rules, in policy order.
	Requesters []Requester
	// Mode is how requests are approved.
	Mode Mode
	// Condition, if set, must hold for an auto approval.
	Condition Condition

	// Stages must all be satisfied for a ModeApprovers request.
	Stages []Stage
	// Window is the longest an approval may last (ModeApprovers).
	Window time.Duration
	// PendingTTL is how long a request may wait for reviews; zero means
	// DefaultPendingTTL.
	PendingTTL time.Duration
	// Reason constrains requesters' reasons.
	Reason ReasonRule
	// TicketPattern, if set, is a regular expression (RE2 syntax) that a
	// ticket must match in full.
	TicketPattern string

	// BreakGlass, if set, lets the principals it names take the entitlement
	// at once, without approval, under a mandatory review afterwards (see
	// DecideBreakGlass). Nil means break-glass is not allowed. It is
	// independent of Mode.
	BreakGlass *BreakGlassRule
}

// Policy is the set of entitlements in force.
type Policy struct {
	// Source names where the policy came from (a file path), for messages.
	Source string
	// Hash identifies this version of the policy: the lowercase hex SHA-256
	// of Text. Every ledger record of a decision carries it (Details
	// "policy"); empty for a policy built in code.
	Hash string
	// Text is the policy file's bytes exactly as loaded, recorded once per
	// version in the ledger so that an auditor can replay any decision.
	Text []byte
	// TrustDomain is the only trust domain requesters may come from.
	TrustDomain string
	// Entitlements by name.
	Entitlements map[string]*Entitlement
}

// Names returns the entitlement names, sorted.
func (p *Policy) Names() []string {
	names := make([]string, 0, len(p.Entitlements))
	for n := range p.Entitlements {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the named entitlement or ErrUnknownEntitlement.
func (p *Policy) Lookup(name string) (*Entitlement, error) {
	if p == nil {
		return nil, fmt.Errorf("no policy loaded: %w", ErrUnknownEntitlement)
	}
	e, ok := p.Entitlements[name]
	if !ok {
		return nil, fmt.Errorf("entitlement %q: %w", name, ErrUnknownEntitlement)
	}
	return e, nil
}

// Eligible returns the first requester rule that covers principal, as a
// reference ("entitlements.demo.requesters[0]") for the ledger.
func (e *Entitlement) Eligible(principal Principal) (rule string, ok bool) {
	for i, r := range e.Requesters {
		if r.Matches(principal) {
			return fmt.Sprintf("entitlements.%s.requesters[%d]", e.Name, i), true
		}
	}
	return "", false
}
