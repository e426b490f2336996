package jwtissuer

import "errors"

// ErrInsecureKeyFile is returned by New when the signing key file is not a
// regular file or can be read by group or others. The message names the file
// and the chmod that fixes it.
var ErrInsecureKeyFile = errors.New("insecure signing key file")

// ErrKeyMismatch is returned by New when the key file holds a key of another
// type than Config.Algorithm needs (an Ed25519 key for ES256, say).
var ErrKeyMismatch = errors.New("signing key does not match the configured algorithm")

// ErrNoDenyList is returned by Revoke when the issuer has no deny-list to
// publish revoked JWT IDs on.
var ErrNoDenyList = errors.New("no JWT deny-list configured")
