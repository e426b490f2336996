// Package vault issues short-lived credentials from Vault and revokes them.
// It is the only Writ code that knows Vault paths, roles, leases and HTTP
// statuses.
//
// # Client
//
// A Client (NewClient) is Writ's own authenticated connection to Vault,
// shared by the issuers. It is built from explicit configuration only: no
// VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, VAULT_WRAP_TTL or other ambient
// VAULT_* variable changes what it does, and it uses no HTTP proxy. It logs
// in with a static token, a TLS client certificate (the broker's X509-SVID;
// Vault 1.13's cert auth needs the certificate to carry a subject common
// name) or AppRole; renews its token with api.LifetimeWatcher and logs in
// again, with backoff, when the token reaches its maximum TTL, renewal fails
// or a request finds it revoked. Healthy reports whether it can serve.
//
// Every request goes through one circuit breaker per Client: after
// consecutive ErrUnavailable results it opens and calls fail fast with
// ErrCircuitOpen (and ErrUnavailable) without touching Vault, until a single
// probe after a jittered cooldown succeeds. Idempotent requests (reads,
// revokes, renews, signing) are retried a bounded number of times with full
// jitter, never past the caller's deadline; requests that mint (token
// create, dynamic secret read, login) are never retried.
//
// # Issuers
//
// TokenIssuer (approval.KindVaultToken): a grant for role R becomes a token
// created at auth/token/create/R with a TTL and explicit max TTL of the
// grant's remaining lifetime in whole seconds and renewable=false, so the
// token cannot outlive the grant. Before creating it, the issuer reads the
// role and refuses (rather than letting Vault cap the TTL silently) when the
// role's limits are below what was granted. Issued tokens are identified by
// their accessor.
//
// SecretIssuer (approval.KindVaultSecret): a grant for path P reads a
// dynamic secret (e.g. database/creds/<role>) and hands out its fields;
// the credential is identified by its lease ID and revoked or renewed
// through sys/leases/{revoke,renew}/<lease>.
//
// TransitJWTIssuer (approval.KindVaultTransitJWT): a grant becomes a JWT
// signed by transit/sign/<key>; the private key never leaves Vault, and JWKS
// publishes every key version so rotation does not break issued tokens.
//
// Whenever Vault grants a longer lifetime than the grant allows, the
// credential is revoked at once and Issue fails with ErrOverGrant.
//
// # Policies
//
// IssuerPolicy, SecretPolicy, TransitPolicy and RecipePolicy return the
// least-privilege Vault policy Writ's token needs for its recipes, and
// ClientPolicy what a logged-in Client needs for itself. Secrets (tokens,
// passwords, JWTs) are never logged; accessors, lease IDs and jtis are.
package vault
