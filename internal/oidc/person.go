package oidc

import (
	"time"

	"github.com/writ-dev/writ/approval"
)

// Person is the authenticated subject of a verified ID token.
type Person struct {
	// Issuer is the token's "iss" claim (equal to Config.Issuer).
	Issuer string
	// Subject is the token's "sub" claim: the provider's stable, unique
	// identifier for the person.
	Subject string
	// Email is the "email" claim, or "" if absent. It is informational
	// only: it is not verified here and must not be used to authorize.
	Email string
	// Groups are the values of the groups claim, in token order; nil if
	// the claim is absent.
	Groups []string
	// Expires is the token's "exp" claim.
	Expires time.Time
}

// Principal returns the person as recorded in the ledger:
// "oidc:" + Issuer + "#" + Subject.
func (p Person) Principal() approval.Principal {
	return approval.Principal("oidc:" + p.Issuer + "#" + p.Subject)
}
