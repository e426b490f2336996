// Package client is the Go library workloads use to obtain credentials from
// a Writ broker.
//
// A Client authenticates to the broker with the workload's X.509-SVID over
// mutual TLS, and accepts only a broker presenting the configured SPIFFE ID.
// The SVID comes from the SPIFFE Workload API (Config.Socket, by default the
// SPIFFE_ENDPOINT_SOCKET environment variable) or from any x509svid.Source
// and x509bundle.Source (Config.Source), and is read on every TLS handshake,
// so rotations need no restart.
//
// Client.Credential returns a cached credential and renews it once a
// fraction of its lifetime has passed (Config.RenewFraction, moved by up to
// ±Config.Jitter of the lifetime so that a fleet does not renew in step).
// Concurrent callers share one request to the broker. If a renewal fails
// while the cached credential is still valid, the cached one is returned and
// the failure logged, so a short broker outage is invisible to the workload.
//
// Entitlements that need people's approval are asked for with
// Client.RequestAccess and followed with Client.Watch; once approved,
// Client.Credential mints credentials under the approval until its window
// ends.
//
// # Errors
//
// Errors from the broker wrap both one of this package's sentinels (when one
// applies) and the gRPC status, so callers may use errors.Is with ErrDenied,
// ErrNotFound, ErrInvalid, ErrNeedsApproval or ErrUnavailable, or
// status.Code from google.golang.org/grpc/status for the exact code. A call
// that runs out of time or is cancelled wraps context.DeadlineExceeded or
// context.Canceled.
//
// The secret inside a Credential has type Secret, which prints and logs as
// "[REDACTED]"; call Secret.Reveal to use it.
package client
