package oidc

import "errors"

// ErrUnauthenticated is wrapped by every error Verify returns: the token does
// not authenticate anyone. The broker maps it to codes.Unauthenticated. The
// error's message holds only a short reason, safe to show to the caller.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrInvalidConfig is returned by New when the Config is unusable: a missing
// issuer or audience, a forbidden algorithm ("none", HS*), a leeway outside
// [0, 60s], or a plain-http URL to a host other than loopback.
var ErrInvalidConfig = errors.New("invalid oidc configuration")

// ErrDiscovery is returned by New when the provider's discovery document or
// its key set cannot be fetched or is inconsistent (for example, the
// document names another issuer).
var ErrDiscovery = errors.New("openid provider discovery failed")

// ErrInvalidRequest is returned by DevIssuer.Mint (and answered with 400 by
// its token handler) for a subject or group outside
// ^[a-z0-9][a-z0-9._-]{0,63}$ or a TTL outside (0, DevMaxTTL].
var ErrInvalidRequest = errors.New("invalid token request")

// Unexported causes of rejections that jwt does not name; tests match them
// with errors.Is.
var (
	errTokenTooLarge  = errors.New("token larger than MaxTokenSize")
	errEmptyToken     = errors.New("empty token")
	errMissingSubject = errors.New("sub claim missing or empty")
	errBadSubject     = errors.New("sub claim not a string, too long, or holding control or format characters")
	errBadGroups      = errors.New("groups claim is not a list of strings without control or format characters")
	errBadEmail       = errors.New("email claim is not a string without control or format characters")
)
