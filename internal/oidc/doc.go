// Package oidc authenticates people calling Writ's admin API with OpenID
// Connect ID tokens.
//
// A Verifier checks a token against the identity provider's JSON Web Key Set
// (fetched and refreshed by github.com/MicahParks/keyfunc/v3) and against the
// configured issuer, audience, algorithm allow-list, expiry and issued-at
// times, then returns the Person it names. The person's approval.Principal is
// "oidc:<issuer>#<subject>"; the groups claim maps to approver groups.
//
// Every rejection wraps ErrUnauthenticated. Its message is a short, fixed
// reason ("token expired", "wrong audience", …) that is safe to return to the
// caller; the underlying cause is kept for errors.Is and debug logging only.
// Tokens are never logged.
//
// DevIssuer is a local, in-memory identity provider for `writd dev` only. It
// must never run anywhere else: see its documentation.
package oidc
