package client

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Secret is a credential's secret material: a JWT or a Vault token. It
// prints and logs as "[REDACTED]"; Reveal returns the secret itself.
type Secret string

const redacted = "[REDACTED]"

// String returns "[REDACTED]", so the secret never reaches a log or an
// error message by accident.
func (Secret) String() string { return redacted }

// GoString returns "[REDACTED]", for %#v.
func (Secret) GoString() string { return redacted }

// LogValue returns "[REDACTED]"; it implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Reveal returns the secret itself, to hand to the service that accepts it.
func (s Secret) Reveal() string { return string(s) }

// Credential is a time-boxed credential minted by the broker. Only Secret is
// sensitive: the other fields are safe to log, and the broker's ledger
// records Reference, never Secret.
type Credential struct {
	// GrantID identifies the grant in the broker's ledger.
	GrantID string
	// Entitlement is the entitlement it was minted under.
	Entitlement string
	// Kind is "jwt", "vault_token", "vault_secret" (a Vault dynamic secret,
	// such as a database login) or "vault_transit_jwt".
	Kind string
	// Secret is the JWT or Vault token.
	Secret Secret
	// Data holds a dynamic secret's fields, for example "username" and
	// "password"; nil for other kinds. Every value is secret.
	Data map[string]Secret
	// Reference identifies the credential without revealing it: the JWT's
	// jti, the Vault token's accessor or the lease ID.
	Reference string
	// IssuedAt and ExpiresAt bound the credential's lifetime.
	IssuedAt, ExpiresAt time.Time
	// BreakGlass reports whether it was taken as break-glass.
	BreakGlass bool
}

// String describes c without its secret.
func (c Credential) String() string {
	return fmt.Sprintf("%s credential %s for %q (grant %s), expires %s",
		c.Kind, c.Reference, c.Entitlement, c.GrantID, c.ExpiresAt.Format(time.RFC3339))
}

// LogValue logs c's identifying fields and never its secret; it implements
// slog.LogValuer.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("grant_id", c.GrantID),
		slog.String("entitlement", c.Entitlement),
		slog.String("kind", c.Kind),
		slog.String("reference", c.Reference),
		slog.Time("expires_at", c.ExpiresAt),
		slog.Bool("break_glass", c.BreakGlass),
	)
}

// Lifetime returns how long c was issued for.
func (c Credential) Lifetime() time.Duration { return c.ExpiresAt.Sub(c.IssuedAt) }

// Expired reports whether c has expired at now.
func (c Credential) Expired(now time.Time) bool { return !now.Before(c.ExpiresAt) }

// RenewTime returns when c should be renewed: once fraction of its lifetime
// has passed, moved earlier or later by a random amount of up to jitter times
// the lifetime. The result is never before IssuedAt nor after ExpiresAt.
// Fractions are of the lifetime, for example 0.66 and 0.1.
func (c Credential) RenewTime(fraction, jitter float64) time.Time {
	return renewTime(c.IssuedAt, c.ExpiresAt, fraction, jitter, rand.Float64())
}

// renewTime is RenewTime with the random number r in [0, 1) given: r = 0 is
// the earliest time, r → 1 the latest.
func renewTime(issued, expires time.Time, fraction, jitter, r float64) time.Time {
	life := expires.Sub(issued)
	if life <= 0 {
		return issued
	}
	f := fraction + jitter*(2*r-1)
	f = min(max(f, 0), 1)
	return issued.Add(time.Duration(f * float64(life)))
}

func credentialFromProto(c *brokerv1.Credential) Credential {
	var data map[string]Secret
	if len(c.GetData()) > 0 {
		data = make(map[string]Secret, len(c.GetData()))
		for k, v := range c.GetData() {
			data[k] = Secret(v)
		}
	}
	return Credential{
		Data:        data,
		GrantID:     c.GetGrantId(),
		Entitlement: c.GetEntitlement(),
		Kind:        kindName(c.GetKind()),
		Secret:      Secret(c.GetSecret()),
		Reference:   c.GetReference(),
		IssuedAt:    c.GetIssuedAt().AsTime(),
		ExpiresAt:   c.GetExpiresAt().AsTime(),
		BreakGlass:  c.GetBreakGlass(),
	}
}

func kindName(k brokerv1.CredentialKind) string {
	switch k {
	case brokerv1.CredentialKind_CREDENTIAL_KIND_JWT:
		return "jwt"
	case brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_TOKEN:
		return "vault_token"
	case brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_SECRET:
		return "vault_secret"
	case brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_TRANSIT_JWT:
		return "vault_transit_jwt"
	default:
		return "unspecified"
	}
}
