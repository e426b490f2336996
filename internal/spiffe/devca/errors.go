package devca

import "errors"

// ErrExists is returned by Create when the directory already holds a CA
// certificate or key. Create never overwrites a CA.
var ErrExists = errors.New("development CA already exists")

// ErrExpired is returned by Load and LoadOrCreate when the persisted CA
// certificate is outside its validity period. Delete ca.pem and ca_key.pem to
// start a new CA (every SVID it issued becomes untrusted).
var ErrExpired = errors.New("development CA certificate is not currently valid")

// ErrTrustDomainMismatch is returned by LoadOrCreate when the persisted CA is
// for a different trust domain, and by Issue when the requested SPIFFE ID is
// not a member of the CA's trust domain.
var ErrTrustDomainMismatch = errors.New("trust domain mismatch")

// ErrInvalid is returned for arguments that cannot produce a valid X509-SVID:
// a SPIFFE ID without a path, a non-positive TTL, NotAfter before NotBefore,
// or a persisted CA whose files do not form a usable CA.
var ErrInvalid = errors.New("invalid argument")
