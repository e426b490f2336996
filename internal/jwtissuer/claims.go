package jwtissuer

import (
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/writ-dev/writ/approval"
)

// Claims are the claims of every JWT Writ issues, whoever signs it (the
// local key here, or a Vault transit key), so relying parties see one shape.
type Claims struct {
	jwt.RegisteredClaims
	// Entitlement is the name of the granted entitlement.
	Entitlement string `json:"ent"`
	// BreakGlass marks a credential taken without approval.
	BreakGlass bool `json:"break_glass,omitempty"`
}

// NewClaims returns the claims for grant g issued by iss: sub is the
// beneficiary, aud the recipe's audience, jti the grant ID; iat and nbf are
// g.IssuedAt (now if zero) and exp is g.Expires, both truncated to whole
// seconds, so the token never outlives the grant. It returns an error
// wrapping approval.ErrInvalid when that leaves exp at or before iat (a
// grant shorter than a second).
func NewClaims(iss string, g approval.Grant, now time.Time) (Claims, error) {
	issuedAt := g.IssuedAt
	if issuedAt.IsZero() {
		issuedAt = now
	}
	iat := jwt.NewNumericDate(issuedAt) // truncated to the second
	exp := jwt.NewNumericDate(g.Expires)
	if !exp.After(iat.Time) {
		return Claims{}, fmt.Errorf("expiry %s is not a whole second after issue time %s: %w",
			g.Expires.Format(time.RFC3339Nano), issuedAt.Format(time.RFC3339Nano), approval.ErrInvalid)
	}
	return Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    iss,
			Subject:   string(g.Principal),
			Audience:  jwt.ClaimStrings(slices.Clone(g.Recipe.Audience)),
			ExpiresAt: exp,
			NotBefore: iat,
			IssuedAt:  iat,
			ID:        g.ID,
		},
		Entitlement: g.Entitlement,
		BreakGlass:  g.BreakGlass,
	}, nil
}
