package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/writ-dev/writ/approval"
)

// roleName is what a token role name may look like. It keeps role names
// from adding path segments ("../", "/") to the Vault paths built from them.
var roleName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// checkRole returns an error wrapping approval.ErrInvalid unless role is a
// valid token role name.
func checkRole(role string) error {
	if !roleName.MatchString(role) {
		return fmt.Errorf("token role %q: only letters, digits, '_' and '-' are allowed: %w", role, approval.ErrInvalid)
	}
	return nil
}

// roleLimits are the parts of a token role that bound a token's lifetime.
// Token roles have no max_ttl of their own (Vault 1.13 ignores
// token_max_ttl on them); the token mount's max_lease_ttl can still shorten a
// token, which Issue reports after the fact.
type roleLimits struct {
	explicitMaxTTL time.Duration
}

// roleCacheTTL is how long a token role's limits are reused before Vault is
// asked again. Reading the role on every grant doubled the Vault round trips
// of a grant (docs/BENCHMARKS.md, R1). A role lowered meanwhile is still
// safe: Issue asks for explicit_max_ttl itself and reports the real expiry.
const roleCacheTTL = 30 * time.Second

type cachedRole struct {
	limits roleLimits
	at     time.Time
}

// readRole returns the limits of token role role, from a short cache.
func (i *TokenIssuer) readRole(ctx context.Context, role string) (roleLimits, error) {
	now := i.now()
	i.rolesMu.Lock()
	c, ok := i.roles[role]
	i.rolesMu.Unlock()
	if ok && now.Sub(c.at) < roleCacheTTL && !now.Before(c.at) {
		return c.limits, nil
	}
	l, err := i.fetchRole(ctx, role)
	if err != nil {
		return roleLimits{}, err
	}
	i.rolesMu.Lock()
	if i.roles == nil {
		i.roles = map[string]cachedRole{}
	}
	i.roles[role] = cachedRole{limits: l, at: now}
	i.rolesMu.Unlock()
	return l, nil
}

// fetchRole reads the limits of token role role from Vault.
func (i *TokenIssuer) fetchRole(ctx context.Context, role string) (roleLimits, error) {
	path := "auth/token/roles/" + role
	var s *api.Secret
	err := i.c.do(ctx, op{name: "read token role", path: path, capability: "read", idempotent: true}, func(ctx context.Context) error {
		var err error
		s, err = i.c.api.Logical().ReadWithContext(ctx, path)
		return err
	})
	if err != nil {
		return roleLimits{}, err
	}
	if s == nil || s.Data == nil {
		return roleLimits{}, fmt.Errorf("read token role: %q: no such role: %w", path, ErrNotFound)
	}
	var l roleLimits
	for _, k := range []string{"token_explicit_max_ttl", "explicit_max_ttl"} {
		if v, ok := s.Data[k]; ok {
			if l.explicitMaxTTL, err = seconds(v); err != nil {
				return roleLimits{}, fmt.Errorf("read token role: %q: field %s: %w", path, k, err)
			}
			break
		}
	}
	return l, nil
}

// check returns an error naming the role's limit if a token of ttl cannot be
// created from role as requested: Writ never lets Vault shorten a grant
// silently. A periodic role needs no check: the explicit_max_ttl Issue sets
// caps the period.
func (l roleLimits) check(role string, ttl time.Duration) error {
	if l.explicitMaxTTL > 0 && l.explicitMaxTTL < ttl {
		return fmt.Errorf("token role %q allows at most %s (token_explicit_max_ttl) but the grant needs %s; raise the role's limit or lower the entitlement's max_ttl: %w",
			role, l.explicitMaxTTL, ttl, approval.ErrTTLTooLong)
	}
	return nil
}

// seconds converts a Vault duration field (a JSON number of seconds, or a
// duration string) to a time.Duration.
func seconds(v any) (time.Duration, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return 0, fmt.Errorf("not whole seconds: %q", v)
		}
		return time.Duration(n) * time.Second, nil
	case float64:
		return time.Duration(v) * time.Second, nil
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Duration(n) * time.Second, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("not a duration: %q", v)
		}
		return d, nil
	default:
		return 0, fmt.Errorf("unexpected type %T", v)
	}
}

// MaxTTL returns the longest token role r can give (its
// token_explicit_max_ttl), or 0 when the role sets no limit. The broker shows
// it to approvers and refuses requests it could not honour.
func (i *TokenIssuer) MaxTTL(ctx context.Context, r approval.Recipe) (time.Duration, error) {
	if r.Kind != approval.KindVaultToken {
		return 0, fmt.Errorf("recipe kind %q is not %q: %w", r.Kind, approval.KindVaultToken, approval.ErrInvalid)
	}
	if err := checkRole(r.Role); err != nil {
		return 0, err
	}
	l, err := i.readRole(ctx, r.Role)
	if err != nil {
		return 0, err
	}
	return l.explicitMaxTTL, nil
}
