package broker

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/approval"
)

// Errors the broker marks itself, so toStatus can map them without knowing
// the adapters' own errors.
var (
	// errIssuer marks a failure of an Issuer; nothing was issued.
	errIssuer = errors.New("credential backend failed")
	// errLedger marks a failure to record in the ledger; nothing was issued.
	errLedger = errors.New("ledger unavailable")
	// errUnrecorded marks a decision whose transaction did not commit:
	// nothing was decided or recorded.
	errUnrecorded = errors.New("decision not recorded")
	// errNoIssuer marks an entitlement whose credential kind has no issuer.
	errNoIssuer = errors.New("no issuer configured")
	// errNotOperator marks an admin call by a caller that is not an operator.
	errNotOperator = errors.New("caller is not an operator")
	// errBadRequest marks malformed request fields.
	errBadRequest = errors.New("bad request")
	// errNotWorkload marks a workload RPC called by a person.
	errNotWorkload = errors.New("caller is not a workload")
	// errNotPerson marks a review attempted without a person's identity.
	errNotPerson = errors.New("caller is not a person")
	// errNoApprovals marks an approval RPC on a broker without approvals.
	errNoApprovals = errors.New("approvals are not configured on this broker")
)

// toStatus is the only place domain and adapter errors become gRPC statuses.
// Messages are for the caller to act on; internal details are logged, not
// returned.
func (s *Server) toStatus(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, approval.ErrUnknownEntitlement),
		errors.Is(err, approval.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, approval.ErrNotEligible),
		errors.Is(err, approval.ErrConditionFalse),
		errors.Is(err, approval.ErrBreakGlassNotAllowed),
		errors.Is(err, approval.ErrSelfApproval),
		errors.Is(err, approval.ErrAlreadyReviewed),
		errors.Is(err, approval.ErrNotApprover),
		errors.Is(err, errNotOperator),
		errors.Is(err, errNotWorkload),
		errors.Is(err, errNotPerson):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, approval.ErrNotApproved),
		errors.Is(err, approval.ErrWindowEnded),
		errors.Is(err, approval.ErrReviewOverdue),
		errors.Is(err, approval.ErrResolved),
		errors.Is(err, approval.ErrConflict),
		errors.Is(err, errNoApprovals):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, approval.ErrTTLTooLong),
		errors.Is(err, approval.ErrInvalid),
		errors.Is(err, errBadRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, approval.ErrUnsupported),
		errors.Is(err, errNoIssuer):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, approval.ErrBackendDenied):
		// The broker's own Vault permissions need fixing; say which.
		s.log.ErrorContext(ctx, "credential backend refused the broker", "error", err)
		return status.Error(codes.FailedPrecondition, "the broker is not allowed to mint this credential; an operator must fix its Vault policy: "+err.Error())
	case errors.Is(err, errLedger), errors.Is(err, errUnrecorded):
		s.log.ErrorContext(ctx, "ledger append failed", "error", err)
		return status.Error(codes.Unavailable, "ledger unavailable: nothing was issued, decided or changed; retry later")
	case errors.Is(err, errIssuer):
		s.log.ErrorContext(ctx, "credential issuance failed", "error", err)
		return status.Error(codes.Unavailable, "credential backend unavailable: no credential was issued; retry later")
	default:
		s.log.ErrorContext(ctx, "internal error", "error", err)
		return status.Error(codes.Internal, "internal error")
	}
}
