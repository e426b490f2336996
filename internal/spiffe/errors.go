package spiffe

import "errors"

// ErrClosed is returned by a FileSource's getters after Close.
var ErrClosed = errors.New("source is closed")

// ErrKeyMismatch is returned when the private key file does not hold the key
// of the SVID certificate's leaf.
var ErrKeyMismatch = errors.New("private key does not match certificate")

// ErrNotCurrent is returned when the SVID's leaf certificate is expired or
// not yet valid.
var ErrNotCurrent = errors.New("certificate is not currently valid")

// ErrInvalidSVID is returned when the files do not hold an X509-SVID and
// trust bundle as the SPIFFE specification defines them (for example a leaf
// with no or several URI SANs, a CA leaf, a key that is not PKCS#8, an empty
// or malformed bundle, or a chain that does not verify against the bundle).
var ErrInvalidSVID = errors.New("invalid X509-SVID")

// ErrConfig is returned for a missing or malformed required setting, such as
// an empty Workload API socket address or file path.
var ErrConfig = errors.New("invalid configuration")

// ErrInvalidJWTSVID is returned by JWTVerifier.VerifyJWTSVID for a token that
// is not a valid JWT-SVID for the verifier: malformed or too large, signed
// by a key outside the trust domain's JWT bundle, expired, for another
// audience, or from another trust domain.
var ErrInvalidJWTSVID = errors.New("invalid JWT-SVID")

// ErrInvalidBundle is returned when a JWT bundle file is neither a SPIFFE
// bundle nor a JWKS, or holds no JWT-SVID signing keys.
var ErrInvalidBundle = errors.New("invalid JWT bundle")
