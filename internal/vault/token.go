package vault

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/writ-dev/writ/approval"
)

// Issue creates a Vault token for g from the token role g.Recipe.Role.
//
// The token's ttl and explicit_max_ttl are the grant's remaining lifetime
// (the lesser of g.TTL and g.Expires minus now) rounded down to whole seconds,
// and it is not renewable. Its metadata records grant_id, spiffe_id and
// entitlement, and its display name is "writ-<entitlement>". The returned
// credential's Ref.ID is the token's accessor and Ref.Expires is now plus the
// lease Vault granted; Vault counts the TTL from the moment it creates the
// token, so the token may outlive Ref.Expires by the request's latency and
// any clock difference between Writ and Vault.
//
// Issue returns an error wrapping approval.ErrInvalid if g is not a Vault
// token grant, names an invalid role, or has less than one second left;
// approval.ErrTTLTooLong if the role's token_explicit_max_ttl is below that
// lifetime (Writ does not let Vault cap it silently); ErrOverGrant if Vault
// granted a longer lease anyway (the token is revoked first); and
// ErrNotFound (no such role), ErrDenied or ErrUnavailable when Vault refuses
// or fails. If Vault grants a shorter lease (the token mount's max_lease_ttl),
// Issue logs a warning and Ref.Expires reports the shorter lifetime.
func (i *TokenIssuer) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	role := g.Recipe.Role
	if err := checkGrant(g); err != nil {
		return approval.Credential{}, fmt.Errorf("issue vault token for grant %s: %w", g.ID, err)
	}
	now := i.now()
	ttl := g.TTL
	if !g.Expires.IsZero() {
		ttl = min(ttl, g.Expires.Sub(now))
	}
	ttl = ttl.Truncate(time.Second)
	if ttl < time.Second {
		return approval.Credential{}, fmt.Errorf("issue vault token for grant %s: %s left (expires %s), below Vault's one-second granularity: %w",
			g.ID, ttl, g.Expires.Format(time.RFC3339), approval.ErrInvalid)
	}
	limits, err := i.readRole(ctx, role)
	if err != nil {
		return approval.Credential{}, fmt.Errorf("issue vault token for grant %s: %w", g.ID, err)
	}
	if err := limits.check(role, ttl); err != nil {
		return approval.Credential{}, fmt.Errorf("issue vault token for grant %s: %w", g.ID, err)
	}

	secret, err := i.create(ctx, g, role, ttl)
	if err != nil {
		return approval.Credential{}, fmt.Errorf("issue vault token for grant %s: %w", g.ID, err)
	}
	auth := secret.Auth
	lease := time.Duration(auth.LeaseDuration) * time.Second
	if lease <= 0 || lease > ttl {
		// lease 0 means the token never expires.
		err := fmt.Errorf("issue vault token for grant %s: role %q: asked for %s, vault granted %s (0s = no expiry): %w",
			g.ID, role, ttl, lease, ErrOverGrant)
		if rerr := i.revokeAfterOverGrant(ctx, auth.Accessor); rerr != nil {
			i.log.ErrorContext(ctx, "vault over-granted token not revoked", "grant_id", g.ID, "accessor", auth.Accessor, "error", rerr)
			return approval.Credential{}, fmt.Errorf("%w; revoking accessor %s also failed: %w", err, auth.Accessor, rerr)
		}
		i.log.WarnContext(ctx, "vault over-granted token revoked", "grant_id", g.ID, "accessor", auth.Accessor, "requested_ttl", ttl, "granted_ttl", lease)
		return approval.Credential{}, err
	}
	if lease < ttl {
		i.log.WarnContext(ctx, "vault granted a shorter ttl than requested", "grant_id", g.ID, "role", role, "requested_ttl", ttl, "granted_ttl", lease)
	}
	expires := now.Add(lease)
	i.log.InfoContext(ctx, "vault token issued", "grant_id", g.ID, "role", role, "accessor", auth.Accessor, "ttl", lease, "expires", expires)
	return approval.Credential{
		Ref:      approval.CredentialRef{Kind: approval.KindVaultToken, ID: auth.Accessor, Expires: expires},
		Secret:   approval.Secret(auth.ClientToken),
		IssuedAt: now,
	}, nil
}

// checkGrant reports why g cannot be issued as a Vault token.
func checkGrant(g approval.Grant) error {
	switch {
	case g.Recipe.Kind != approval.KindVaultToken:
		return fmt.Errorf("recipe kind is %q, want %q: %w", g.Recipe.Kind, approval.KindVaultToken, approval.ErrInvalid)
	case g.Recipe.Role == "":
		return fmt.Errorf("recipe has no token role: %w", approval.ErrInvalid)
	case g.ID == "":
		return fmt.Errorf("grant has no ID: %w", approval.ErrInvalid)
	}
	return checkRole(g.Recipe.Role)
}

// create posts to auth/token/create/<role> and checks that the answer holds a
// token.
func (i *TokenIssuer) create(ctx context.Context, g approval.Grant, role string, ttl time.Duration) (*api.Secret, error) {
	path := "auth/token/create/" + role
	secs := strconv.FormatInt(int64(ttl/time.Second), 10) + "s"
	renewable := false
	req := &api.TokenCreateRequest{
		TTL:            secs,
		ExplicitMaxTTL: secs,
		Renewable:      &renewable,
		DisplayName:    "writ-" + g.Entitlement,
		Metadata: map[string]string{
			"grant_id":    g.ID,
			"spiffe_id":   string(g.Principal),
			"entitlement": g.Entitlement,
			"break_glass": strconv.FormatBool(g.BreakGlass),
		},
	}
	var secret *api.Secret
	err := i.c.do(ctx, op{name: "create token", path: path, capability: "update"}, func(ctx context.Context) error {
		var err error
		secret, err = i.c.api.Auth().Token().CreateWithRoleWithContext(ctx, req, role)
		return err
	})
	if err != nil {
		return nil, err
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" || secret.Auth.Accessor == "" {
		return nil, fmt.Errorf("create token: %q: vault returned no token", path)
	}
	return secret, nil
}

// revokeAfterOverGrant revokes accessor even if ctx is already canceled: a
// token Writ will not hand out must not stay alive.
func (i *TokenIssuer) revokeAfterOverGrant(ctx context.Context, accessor string) error {
	return i.revoke(context.WithoutCancel(ctx), accessor)
}

// Revoke revokes the token identified by ref.ID, its accessor. Revoking a
// token that is already revoked or expired succeeds, so Revoke may be
// retried. It returns an error wrapping approval.ErrInvalid for a ref that is
// not a Vault token, and ErrDenied or ErrUnavailable when Vault refuses or
// fails.
func (i *TokenIssuer) Revoke(ctx context.Context, ref approval.CredentialRef) error {
	if ref.Kind != approval.KindVaultToken || ref.ID == "" {
		return fmt.Errorf("revoke vault token: ref kind %q id %q is not a vault token accessor: %w", ref.Kind, ref.ID, approval.ErrInvalid)
	}
	if err := i.revoke(ctx, ref.ID); err != nil {
		return err
	}
	i.log.InfoContext(ctx, "vault token revoked", "accessor", ref.ID)
	return nil
}

// revoke revokes accessor; an unknown accessor counts as revoked.
func (i *TokenIssuer) revoke(ctx context.Context, accessor string) error {
	const path = "auth/token/revoke-accessor"
	err := i.c.do(ctx, op{name: "revoke token", path: path, capability: "update", idempotent: true}, func(ctx context.Context) error {
		return i.c.api.Auth().Token().RevokeAccessorWithContext(ctx, accessor)
	})
	switch {
	case err == nil:
		return nil
	case hasMessage(err, 400, "invalid accessor"):
		// Vault forgets a token once it is revoked or expired. Vault 1.13
		// answers 200 with a warning for such an accessor; versions that
		// answer 400 "invalid accessor" end up here.
		i.log.DebugContext(ctx, "vault token already gone", "accessor", accessor)
		return nil
	default:
		return fmt.Errorf("revoke vault token %s: %w", accessor, err)
	}
}

// LookupAccessor returns the remaining TTL and the metadata of the token with
// accessor. It returns ErrNotFound if Vault knows no such token (never
// issued, revoked or expired), and ErrDenied or ErrUnavailable when Vault
// refuses or fails.
func (i *TokenIssuer) LookupAccessor(ctx context.Context, accessor string) (ttl time.Duration, meta map[string]string, err error) {
	const path = "auth/token/lookup-accessor"
	var s *api.Secret
	err = i.c.do(ctx, op{name: "look up token", path: path, capability: "update", idempotent: true}, func(ctx context.Context) error {
		var err error
		s, err = i.c.api.Auth().Token().LookupAccessorWithContext(ctx, accessor)
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("look up vault token %s: %w", accessor, err)
	}
	if s == nil || s.Data == nil {
		return 0, nil, fmt.Errorf("look up vault token %s: empty answer: %w", accessor, ErrNotFound)
	}
	ttl, err = seconds(s.Data["ttl"])
	if err != nil {
		return 0, nil, fmt.Errorf("look up vault token %s: ttl: %w", accessor, err)
	}
	meta = make(map[string]string)
	if m, ok := s.Data["meta"].(map[string]any); ok {
		for k, v := range m {
			str, ok := v.(string)
			if !ok {
				return 0, nil, fmt.Errorf("look up vault token %s: meta %q is a %T, want a string", accessor, k, v)
			}
			meta[k] = str
		}
	}
	return ttl, meta, nil
}
