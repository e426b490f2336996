// Package jwtissuer mints short-lived JWTs for grants whose recipe is
// approval.KindJWT, signed with a key kept in Writ's data directory.
//
// The signing key is an Ed25519 (alg EdDSA, the default) or P-256 (alg
// ES256) private key stored as a PKCS#8 PEM file with mode 0600. New creates
// it on first start and refuses to load it later if group or others can read
// it. Relying parties verify tokens against the public key set that JWKS
// returns and Handler serves; a key's "kid" is its RFC 7638 thumbprint, so it
// stays the same across restarts.
//
// Every token carries iss, sub (the grant's principal), aud (the recipe's
// audience), iat and nbf (the grant's decision time), exp (the grant's
// expiry, truncated to whole seconds so the token never outlives the grant),
// jti (the grant ID) and ent (the entitlement name).
package jwtissuer
