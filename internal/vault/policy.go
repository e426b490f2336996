package vault

import (
	"fmt"
	"slices"
	"strings"

	"github.com/writ-dev/writ/approval"
)

// IssuerPolicy returns the Vault policy (HCL) that Writ's own token needs to
// issue tokens from roles and to revoke and look them up: "create"/"update"
// on auth/token/create/<role>, "read" on auth/token/roles/<role> (to check
// the role's TTL limits before issuing), and "update" on
// auth/token/revoke-accessor and auth/token/lookup-accessor.
//
// Roles must be valid role names (see Issue); IssuerPolicy does not check.
func IssuerPolicy(roles ...string) string {
	var b strings.Builder
	for _, r := range roles {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"create\", \"update\"]\n}\n\n", "auth/token/create/"+r)
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n\n", "auth/token/roles/"+r)
	}
	b.WriteString("path \"auth/token/revoke-accessor\" {\n  capabilities = [\"update\"]\n}\n\n")
	b.WriteString("path \"auth/token/lookup-accessor\" {\n  capabilities = [\"update\"]\n}\n")
	return b.String()
}

// SecretPolicy returns the Vault policy (HCL) Writ's token needs to issue
// dynamic secrets from paths (recipe kind vault_secret) and to manage their
// leases: "read" on each path; "read" on <mount>/roles/<role> for a path
// <mount>/creds/<role> (for MaxTTL); and "update" on
// sys/leases/revoke/<path>/* and sys/leases/renew/<path>/* only, so Writ
// can revoke and renew the leases it issued and no others.
//
// Paths must be valid (see SecretIssuer.Issue); SecretPolicy does not check.
func SecretPolicy(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n\n", p)
		if role, ok := secretRolePath(p); ok {
			fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n\n", role)
		}
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"update\"]\n}\n\n", "sys/leases/revoke/"+p+"/*")
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"update\"]\n}\n\n", "sys/leases/renew/"+p+"/*")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// TransitPolicy returns the Vault policy (HCL) Writ's token needs to sign
// JWTs with the transit keys at mount (recipe kind vault_transit_jwt):
// "update" on <mount>/sign/<key> and <mount>/sign/<key>/sha2-256, and
// "read" on <mount>/keys/<key> for the public keys. It grants no export,
// rotation, encryption or configuration.
func TransitPolicy(mount string, keys ...string) string {
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"update\"]\n}\n\n", mount+"/sign/"+k)
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"update\"]\n}\n\n", mount+"/sign/"+k+"/sha2-256")
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n\n", mount+"/keys/"+k)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// ClientPolicy is the Vault policy (HCL) a Client logged in with cert or
// AppRole auth needs for itself: renewing its token and looking it up (to
// tell a lost token from a denial). Vault's built-in "default" policy
// grants both.
const ClientPolicy = `path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
`

// RecipePolicy returns the least-privilege Vault policy (HCL) for issuing
// every recipe in recipes: IssuerPolicy for vault_token roles, SecretPolicy
// for vault_secret paths and TransitPolicy (at DefaultTransitMount) for
// vault_transit_jwt keys. Recipes of other kinds need nothing from Vault.
// It returns an error wrapping approval.ErrInvalid for a recipe whose role,
// path or key is invalid, so the policy never names paths Writ would not
// use.
func RecipePolicy(recipes ...approval.Recipe) (string, error) {
	var roles, paths, keys []string
	for _, r := range recipes {
		switch r.Kind {
		case approval.KindVaultToken:
			if err := checkRole(r.Role); err != nil {
				return "", err
			}
			roles = append(roles, r.Role)
		case approval.KindVaultSecret:
			if err := checkPath(r.Path); err != nil {
				return "", fmt.Errorf("recipe path: %w", err)
			}
			paths = append(paths, r.Path)
		case approval.KindVaultTransitJWT:
			if err := checkName("transit key", r.TransitKey); err != nil {
				return "", err
			}
			keys = append(keys, r.TransitKey)
		}
	}
	var parts []string
	if len(roles) > 0 {
		parts = append(parts, IssuerPolicy(uniq(roles)...))
	}
	if len(paths) > 0 {
		parts = append(parts, SecretPolicy(uniq(paths)...))
	}
	if len(keys) > 0 {
		parts = append(parts, TransitPolicy(DefaultTransitMount, uniq(keys)...))
	}
	return strings.Join(parts, "\n"), nil
}

// uniq returns s sorted without duplicates.
func uniq(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
