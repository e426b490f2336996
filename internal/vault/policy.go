package vault

import (
	"fmt"
	"strings"
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
