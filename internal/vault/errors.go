package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/writ-dev/writ/approval"
)

// ErrUnavailable is returned when Vault cannot be reached or cannot serve the
// request right now: connection refused, timeouts, TLS failures, 429, any 5xx
// (503 when sealed or in standby). Retrying later may succeed.
var ErrUnavailable = errors.New("vault unavailable")

// ErrDenied is returned when Vault answers 403: Writ's token lacks a
// capability. The message names the Vault path; IssuerPolicy shows the policy
// Writ's token needs.
var ErrDenied = fmt.Errorf("vault permission denied: %w", approval.ErrBackendDenied)

// ErrNotFound is returned when a Vault path, token role or accessor does not
// exist (404, "unknown role", "invalid accessor").
var ErrNotFound = errors.New("vault object not found")

// ErrOverGrant is returned when Vault issued a credential (a token or a
// lease) that would live longer than the grant allows. The credential has
// been revoked (or, if that failed, the error says so and carries the
// accessor or lease ID).
var ErrOverGrant = errors.New("vault issued a longer ttl than requested")

// ErrCircuitOpen is returned, together with ErrUnavailable, when the
// client's circuit breaker is open after repeated ErrUnavailable results:
// the call failed fast without contacting Vault. After a cooldown one probe
// request goes through; if it succeeds, calls flow again.
var ErrCircuitOpen = errors.New("vault circuit breaker open")

// ErrNoLease is returned when a vault_secret path answered without a lease:
// it is not a dynamic secret (for example a KV secret), so Writ can neither
// bound its lifetime nor revoke it, and does not hand it out.
var ErrNoLease = errors.New("vault secret has no lease")

// ErrNoDenyList is returned by TransitJWTIssuer.Revoke when no DenyList is
// configured: a signed JWT cannot be recalled, only denied by its jti.
var ErrNoDenyList = errors.New("no jwt deny-list configured")

// responseError presents a *api.ResponseError on one line (its own Error is
// multi-line and repeats the URL) while keeping it reachable with errors.As.
type responseError struct{ err *api.ResponseError }

// Error returns the status code and Vault's error strings.
func (e responseError) Error() string {
	msgs := strings.Join(strings.Fields(strings.Join(e.err.Errors, "; ")), " ")
	if msgs == "" {
		msgs = "no error message"
	}
	return fmt.Sprintf("vault answered %d: %s", e.err.StatusCode, msgs)
}

// Unwrap returns the underlying *api.ResponseError.
func (e responseError) Unwrap() error { return e.err }

// hasMessage reports whether err is a Vault response with status code whose
// error strings contain msg.
func hasMessage(err error, code int, msg string) bool {
	var re *api.ResponseError
	if !errors.As(err, &re) || re.StatusCode != code {
		return false
	}
	for _, e := range re.Errors {
		if strings.Contains(e, msg) {
			return true
		}
	}
	return false
}

// classify wraps err from an operation on path into ErrUnavailable,
// ErrDenied or ErrNotFound where one applies. capability is what the
// operation needs on path, for the ErrDenied message.
func classify(op, path, capability string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		wrapped := responseError{re}
		switch {
		case re.StatusCode == 403:
			return fmt.Errorf("%s: Writ's Vault token needs %q on %q (see IssuerPolicy and RecipePolicy): %w: %w", op, capability, path, ErrDenied, wrapped)
		case re.StatusCode == 404,
			hasMessage(err, 400, "unknown role"),
			hasMessage(err, 400, "invalid accessor"),
			hasMessage(err, 400, "lease not found"),
			hasMessage(err, 400, "invalid lease"):
			return fmt.Errorf("%s: %q: %w: %w", op, path, ErrNotFound, wrapped)
		case re.StatusCode == 412, re.StatusCode == 429, re.StatusCode >= 500:
			return fmt.Errorf("%s: %q: %w: %w", op, path, ErrUnavailable, wrapped)
		default:
			return fmt.Errorf("%s: %q: %w", op, path, wrapped)
		}
	}
	var netErr net.Error
	var urlErr *url.Error
	switch {
	case errors.Is(err, context.Canceled):
		// The caller gave up; Vault may be fine.
		return fmt.Errorf("%s: %q: %w", op, path, err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr), errors.As(err, &urlErr):
		return fmt.Errorf("%s: %q: %w: %w", op, path, ErrUnavailable, err)
	default:
		return fmt.Errorf("%s: %q: %w", op, path, err)
	}
}
