package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrInvalidConfig is returned by New for a missing or inconsistent setting.
var ErrInvalidConfig = errors.New("invalid client configuration")

// ErrClosed is returned by a Client's methods after Close.
var ErrClosed = errors.New("client is closed")

// ErrDenied is wrapped in errors for the broker's PERMISSION_DENIED and
// UNAUTHENTICATED statuses: this workload is not a requester of the
// entitlement, the policy's condition is false, or the broker did not accept
// the workload's SVID. Retrying does not help until the policy changes.
var ErrDenied = errors.New("permission denied")

// ErrNotFound is wrapped in errors for the broker's NOT_FOUND status: no such
// entitlement, or no such request (another workload's request is
// indistinguishable from none).
var ErrNotFound = errors.New("not found")

// ErrInvalid is wrapped in errors for the broker's INVALID_ARGUMENT status: a
// malformed request, a duration or TTL above the policy's limit, or a reason
// or ticket the policy refuses. The broker's message says which.
var ErrInvalid = errors.New("invalid request")

// ErrNeedsApproval is wrapped in errors for the broker's FAILED_PRECONDITION
// status: the entitlement needs a live approval (use RequestAccess and
// Watch), the approval window has ended, or the request was already
// resolved. The broker also uses FAILED_PRECONDITION when it may not mint
// the credential itself (its Vault policy lacks a path) or the caller has an
// overdue break-glass review; the message says which.
var ErrNeedsApproval = errors.New("needs approval")

// ErrUnavailable is wrapped in errors for the broker's UNAVAILABLE status:
// the broker could not be reached, or its issuer or ledger failed and
// nothing was issued. Retrying later may succeed. (A deadline that passes
// during a call is reported as context.DeadlineExceeded instead.)
var ErrUnavailable = errors.New("broker unavailable")

// kindFor returns what an error with code c wraps besides its status: one
// of this package's sentinels, a context error, or nil.
func kindFor(c codes.Code) error {
	switch c {
	case codes.PermissionDenied, codes.Unauthenticated:
		return ErrDenied
	case codes.NotFound:
		return ErrNotFound
	case codes.InvalidArgument:
		return ErrInvalid
	case codes.FailedPrecondition:
		return ErrNeedsApproval
	case codes.Unavailable:
		return ErrUnavailable
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	default:
		return nil
	}
}

// rpcError is an error status from a call to the broker. It unwraps to the
// sentinel for its code, and status.FromError and status.Code find its
// status through any wrapping. Its message omits gRPC's "rpc error: code =".
type rpcError struct {
	s    *status.Status
	kind error
}

func (e *rpcError) Error() string {
	switch msg := e.s.Message(); {
	case e.kind == nil:
		return e.s.Code().String() + ": " + msg
	case msg == "" || msg == e.kind.Error():
		return e.kind.Error()
	default:
		return e.kind.Error() + ": " + msg
	}
}

func (e *rpcError) Unwrap() error              { return e.kind }
func (e *rpcError) GRPCStatus() *status.Status { return e.s }

// wrapRPC wraps err from the call named op. Errors that are not gRPC
// statuses are wrapped as they are.
func wrapRPC(op string, err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("client: %s: %w", op, err)
	}
	return fmt.Errorf("client: %s: %w", op, &rpcError{s: s, kind: kindFor(s.Code())})
}
