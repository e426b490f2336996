package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/writ-dev/writ/approval"
)

// SecretIssuerConfig configures a SecretIssuer.
type SecretIssuerConfig struct {
	// Client is the Vault client to read secrets with. Required.
	Client *Client
	// ShortenLeases lets Issue bring a lease Vault granted for longer than
	// the grant allows down to the grant, by renewing it with the grant's
	// remaining lifetime as increment (Vault 1.13 sets a renewed lease's TTL
	// to the increment, and the database engine moves the user's VALID
	// UNTIL with it). Off, such a lease is revoked at once and Issue fails
	// with ErrOverGrant (reliability case T10), so the Vault role's TTLs
	// must fit every grant.
	ShortenLeases bool
}

// SecretIssuer reads dynamic secrets (recipe kind approval.KindVaultSecret)
// such as database credentials, and revokes and renews their leases. It is
// safe for concurrent use.
type SecretIssuer struct {
	c       *Client
	shorten bool
	now     func() time.Time
	log     *slog.Logger
}

// NewSecretIssuer returns a SecretIssuer that uses cfg.Client, sharing its
// login, circuit breaker, clock and logger with the client's other
// issuers.
func NewSecretIssuer(cfg SecretIssuerConfig) (*SecretIssuer, error) {
	if cfg.Client == nil {
		return nil, errors.New("vault: secret issuer: Client is required")
	}
	return &SecretIssuer{c: cfg.Client, shorten: cfg.ShortenLeases, now: cfg.Client.now, log: cfg.Client.log}, nil
}

// Issue reads the dynamic secret at g.Recipe.Path, e.g.
// "database/creds/orders-ro", and returns its string fields in
// Credential.Data (Credential.Secret stays empty). Ref.ID is the lease ID
// and Ref.Expires is now plus the lease Vault granted.
//
// Vault decides the lease from the role (its default_ttl) and cannot be
// asked for less on read. If the lease is longer than the grant's remaining
// lifetime, or has no expiry, Issue revokes it at once and returns an error
// wrapping ErrOverGrant and approval.ErrTTLTooLong that names the path,
// Vault's TTL and the allowed TTL: the role's default_ttl and max_ttl must
// be set below the entitlement's max_ttl (with a margin, since Vault's TTL
// must fit in the time the grant has left). With
// SecretIssuerConfig.ShortenLeases, Issue first tries to shorten a
// renewable lease by renewing it, and fails only if Vault still grants more.
//
// Issue returns an error wrapping approval.ErrInvalid if g is not a
// vault_secret grant, has an invalid path (see checkPath) or less than a
// second left; ErrNoLease if the path answers without a lease; and
// ErrNotFound, ErrDenied or ErrUnavailable when Vault refuses or fails.
// The read mints a secret, so it is never retried.
func (s *SecretIssuer) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	path := g.Recipe.Path
	if err := checkSecretGrant(g); err != nil {
		return approval.Credential{}, fmt.Errorf("issue vault secret for grant %s: %w", g.ID, err)
	}
	now := s.now()
	allowed := remaining(g, now)
	if allowed < time.Second {
		return approval.Credential{}, fmt.Errorf("issue vault secret for grant %s: %s left (expires %s), below Vault's one-second granularity: %w",
			g.ID, allowed, g.Expires.Format(time.RFC3339), approval.ErrInvalid)
	}

	var secret *api.Secret
	err := s.c.do(ctx, op{name: "read dynamic secret", path: path, capability: "read"}, func(ctx context.Context) error {
		var err error
		secret, err = s.c.api.Logical().ReadWithContext(ctx, path)
		return err
	})
	if err != nil {
		return approval.Credential{}, fmt.Errorf("issue vault secret for grant %s: %w", g.ID, err)
	}
	if secret == nil {
		return approval.Credential{}, fmt.Errorf("issue vault secret for grant %s: %q: no secret at this path: %w", g.ID, path, ErrNotFound)
	}
	if secret.LeaseID == "" {
		return approval.Credential{}, fmt.Errorf("issue vault secret for grant %s: %q: answered without a lease; only dynamic secrets can be issued: %w",
			g.ID, path, ErrNoLease)
	}
	lease := time.Duration(secret.LeaseDuration) * time.Second
	if lease > allowed && secret.Renewable && s.shorten {
		if shorter, at, err := s.shortenLease(ctx, secret.LeaseID, remaining(g, s.now())); err == nil {
			s.log.WarnContext(ctx, "vault lease shortened to the grant; lower the role's default_ttl", "grant_id", g.ID, "path", path,
				"lease_id", secret.LeaseID, "granted_ttl", lease, "ttl", shorter)
			lease, now, allowed = shorter, at, remaining(g, at)
		} else {
			s.log.WarnContext(ctx, "vault lease not shortened", "grant_id", g.ID, "lease_id", secret.LeaseID, "error", err)
		}
	}
	if lease <= 0 || lease > allowed {
		err := fmt.Errorf("issue vault secret for grant %s: %q: vault granted a lease of %s (0s = no expiry) but the grant allows %s; "+
			"set the Vault role's default_ttl and max_ttl below the entitlement's max_ttl: %w: %w",
			g.ID, path, lease, allowed.Truncate(time.Second), ErrOverGrant, approval.ErrTTLTooLong)
		if rerr := s.revoke(context.WithoutCancel(ctx), secret.LeaseID); rerr != nil {
			s.log.ErrorContext(ctx, "vault over-granted lease not revoked", "grant_id", g.ID, "lease_id", secret.LeaseID, "error", rerr)
			return approval.Credential{}, fmt.Errorf("%w; revoking lease %s also failed: %w", err, secret.LeaseID, rerr)
		}
		s.log.WarnContext(ctx, "vault over-granted lease revoked", "grant_id", g.ID, "path", path, "lease_id", secret.LeaseID,
			"allowed_ttl", allowed, "granted_ttl", lease)
		return approval.Credential{}, err
	}
	data := make(map[string]approval.Secret, len(secret.Data))
	for k, v := range secret.Data {
		if str, ok := v.(string); ok {
			data[k] = approval.Secret(str)
		}
	}
	expires := now.Add(lease)
	s.log.InfoContext(ctx, "vault secret issued", "grant_id", g.ID, "path", path, "lease_id", secret.LeaseID,
		"ttl", lease, "renewable", secret.Renewable, "expires", expires)
	return approval.Credential{
		Ref:      approval.CredentialRef{Kind: approval.KindVaultSecret, ID: secret.LeaseID, Expires: expires},
		Data:     data,
		IssuedAt: now,
	}, nil
}

// remaining is how long a credential issued for g at t may live: the
// lesser of g.TTL and the time left until g.Expires.
func remaining(g approval.Grant, t time.Time) time.Duration {
	if g.Expires.IsZero() {
		return g.TTL
	}
	return min(g.TTL, g.Expires.Sub(t))
}

// checkSecretGrant reports why g cannot be issued as a dynamic secret.
func checkSecretGrant(g approval.Grant) error {
	switch {
	case g.Recipe.Kind != approval.KindVaultSecret:
		return fmt.Errorf("recipe kind is %q, want %q: %w", g.Recipe.Kind, approval.KindVaultSecret, approval.ErrInvalid)
	case g.ID == "":
		return fmt.Errorf("grant has no ID: %w", approval.ErrInvalid)
	}
	if err := checkPath(g.Recipe.Path); err != nil {
		return fmt.Errorf("recipe path: %w", err)
	}
	return nil
}

// checkLeaseRef reports why ref cannot name a dynamic secret's lease.
func checkLeaseRef(ref approval.CredentialRef) error {
	if ref.Kind != approval.KindVaultSecret {
		return fmt.Errorf("ref kind %q is not %q: %w", ref.Kind, approval.KindVaultSecret, approval.ErrInvalid)
	}
	if err := checkPath(ref.ID); err != nil {
		return fmt.Errorf("lease id: %w", err)
	}
	return nil
}

// Revoke revokes the lease ref.ID at once; for database credentials Vault
// drops the database user. Revoking a lease that is already revoked,
// expired or unknown succeeds (Vault 1.13 answers 204), so Revoke may be
// retried. It returns an error wrapping approval.ErrInvalid for a ref that
// is not a vault_secret lease, and ErrDenied or ErrUnavailable when Vault
// refuses or fails.
func (s *SecretIssuer) Revoke(ctx context.Context, ref approval.CredentialRef) error {
	if err := checkLeaseRef(ref); err != nil {
		return fmt.Errorf("revoke vault lease: %w", err)
	}
	if err := s.revoke(ctx, ref.ID); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "vault lease revoked", "lease_id", ref.ID)
	return nil
}

// revoke revokes lease through sys/leases/revoke/<lease>, whose path form
// lets Writ's policy name the lease prefixes it may revoke.
func (s *SecretIssuer) revoke(ctx context.Context, lease string) error {
	path := "sys/leases/revoke/" + lease
	err := s.c.do(ctx, op{name: "revoke lease", path: path, capability: "update", idempotent: true}, func(ctx context.Context) error {
		_, err := s.c.api.Logical().WriteWithContext(ctx, path, nil)
		return err
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		// Versions that answer "lease not found" for a lease that is gone.
		s.log.DebugContext(ctx, "vault lease already gone", "lease_id", lease)
		return nil
	default:
		return fmt.Errorf("revoke vault lease %s: %w", lease, err)
	}
}

// shortenLease renews lease with increment ttl (whole seconds) and returns
// the lease Vault granted and the time of the renewal, which the lease
// counts from.
func (s *SecretIssuer) shortenLease(ctx context.Context, lease string, ttl time.Duration) (time.Duration, time.Time, error) {
	secs := int64(ttl / time.Second)
	if secs < 1 {
		return 0, time.Time{}, fmt.Errorf("%s left, below one second", ttl)
	}
	at := s.now()
	secret, err := s.renew(ctx, lease, secs)
	if err != nil {
		return 0, time.Time{}, err
	}
	return time.Duration(secret.LeaseDuration) * time.Second, at, nil
}

// renew renews lease by secs seconds through sys/leases/renew/<lease>.
func (s *SecretIssuer) renew(ctx context.Context, lease string, secs int64) (*api.Secret, error) {
	path := "sys/leases/renew/" + lease
	var secret *api.Secret
	err := s.c.do(ctx, op{name: "renew lease", path: path, capability: "update", idempotent: true}, func(ctx context.Context) error {
		var err error
		secret, err = s.c.api.Logical().WriteWithContext(ctx, path, map[string]any{"increment": secs})
		return err
	})
	if err != nil {
		return nil, err
	}
	if secret == nil {
		return nil, fmt.Errorf("renew lease: %q: vault returned no lease", path)
	}
	return secret, nil
}

// Renew extends the lease ref.ID by increment (whole seconds; the broker
// bounds it by the grant) and returns the new expiry: now plus the lease
// Vault granted, which may be shorter than asked when the role's max_ttl is
// reached. It returns ErrNotFound if the lease is gone, an error wrapping
// approval.ErrInvalid for a bad ref or an increment below one second, and
// ErrDenied or ErrUnavailable when Vault refuses or fails.
func (s *SecretIssuer) Renew(ctx context.Context, ref approval.CredentialRef, increment time.Duration) (time.Time, error) {
	if err := checkLeaseRef(ref); err != nil {
		return time.Time{}, fmt.Errorf("renew vault lease: %w", err)
	}
	secs := int64(increment / time.Second)
	if secs < 1 {
		return time.Time{}, fmt.Errorf("renew vault lease %s: increment %s is below one second: %w", ref.ID, increment, approval.ErrInvalid)
	}
	now := s.now()
	secret, err := s.renew(ctx, ref.ID, secs)
	if err != nil {
		return time.Time{}, fmt.Errorf("renew vault lease %s: %w", ref.ID, err)
	}
	lease := time.Duration(secret.LeaseDuration) * time.Second
	expires := now.Add(lease)
	s.log.InfoContext(ctx, "vault lease renewed", "lease_id", ref.ID, "requested_ttl", time.Duration(secs)*time.Second, "ttl", lease, "expires", expires)
	return expires, nil
}

// MaxTTL returns the max_ttl of the Vault role behind a recipe path of the
// form <mount>/creds/<role> (the database, and similar engines, expose it
// at <mount>/roles/<role>), or 0 when the path has another form or the
// role sets no max_ttl of its own. Note that the lease Vault grants on read
// is the role's default_ttl, which Issue checks against the grant.
func (s *SecretIssuer) MaxTTL(ctx context.Context, r approval.Recipe) (time.Duration, error) {
	if r.Kind != approval.KindVaultSecret {
		return 0, fmt.Errorf("recipe kind %q is not %q: %w", r.Kind, approval.KindVaultSecret, approval.ErrInvalid)
	}
	if err := checkPath(r.Path); err != nil {
		return 0, fmt.Errorf("recipe path: %w", err)
	}
	rolePath, ok := secretRolePath(r.Path)
	if !ok {
		return 0, nil
	}
	var secret *api.Secret
	err := s.c.do(ctx, op{name: "read secret role", path: rolePath, capability: "read", idempotent: true}, func(ctx context.Context) error {
		var err error
		secret, err = s.c.api.Logical().ReadWithContext(ctx, rolePath)
		return err
	})
	if err != nil {
		return 0, err
	}
	if secret == nil || secret.Data == nil {
		return 0, fmt.Errorf("read secret role: %q: no such role: %w", rolePath, ErrNotFound)
	}
	d, err := seconds(secret.Data["max_ttl"])
	if err != nil {
		return 0, fmt.Errorf("read secret role: %q: field max_ttl: %w", rolePath, err)
	}
	return d, nil
}

// secretRolePath maps <mount>/creds/<role> to <mount>/roles/<role>.
func secretRolePath(p string) (string, bool) {
	i := strings.LastIndex(p, "/creds/")
	if i <= 0 {
		return "", false
	}
	role := p[i+len("/creds/"):]
	if role == "" || strings.Contains(role, "/") {
		return "", false
	}
	return p[:i] + "/roles/" + role, true
}
