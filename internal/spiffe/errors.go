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
