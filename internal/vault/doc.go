// Package vault issues short-lived Vault tokens for grants whose recipe is
// approval.KindVaultToken, and revokes them.
//
// It is the only Writ code that knows Vault paths, roles, accessors and HTTP
// statuses. The client is built from explicit configuration only: no
// VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, VAULT_WRAP_TTL or other ambient
// VAULT_* variable changes what it does, and it uses no HTTP proxy.
//
// A grant for role R becomes a token created at auth/token/create/R with a
// TTL and explicit max TTL of the grant's remaining lifetime in whole seconds
// and renewable=false, so the token cannot outlive the grant. Before creating
// it, the issuer reads the role and refuses (rather than letting Vault cap the
// TTL silently) when the role's limits are below what was granted. If Vault
// still returns a longer lease than requested, the token is revoked at once and
// Issue fails with ErrOverGrant.
//
// The token Writ uses needs the policy that IssuerPolicy returns for its
// roles. Issued tokens are identified by their accessor, which is safe to log
// and record; the token itself is never logged.
package vault
