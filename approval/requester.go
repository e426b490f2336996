package approval

import (
	"fmt"
	"strings"
)

// Requester is one eligibility rule: a SPIFFE ID that may request an
// entitlement, either exactly or as a path prefix.
//
// "spiffe://td/ns/prod/api" matches only that ID. "spiffe://td/ns/prod/*"
// matches every ID under /ns/prod/ (on a segment boundary: not /ns/production).
type Requester struct {
	// Pattern is the rule as written in the policy.
	Pattern string
	// ID is the exact ID, or the prefix without the trailing "/*".
	ID Principal
	// Prefix reports whether the rule ends in "/*".
	Prefix bool
}

// ParseRequester parses a requester pattern. The pattern's trust domain must
// be trustDomain: a policy never grants to a foreign trust domain.
func ParseRequester(pattern, trustDomain string) (Requester, error) {
	raw, prefix := strings.CutSuffix(pattern, "/*")
	if strings.Contains(raw, "*") {
		return Requester{}, fmt.Errorf("pattern %q: '*' is allowed only as a final \"/*\" segment: %w", pattern, ErrInvalid)
	}
	id, err := ParseWorkload(raw)
	if err != nil {
		return Requester{}, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	if td := id.TrustDomain(); td != trustDomain {
		return Requester{}, fmt.Errorf("pattern %q: trust domain %q is not the policy's trust domain %q: %w", pattern, td, trustDomain, ErrInvalid)
	}
	return Requester{Pattern: pattern, ID: id, Prefix: prefix}, nil
}

// Matches reports whether p is covered by the rule.
func (r Requester) Matches(p Principal) bool {
	if !r.Prefix {
		return p == r.ID
	}
	return strings.HasPrefix(string(p), string(r.ID)+"/")
}
