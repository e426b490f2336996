package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// State is where an access request is in its lifecycle.
type State string

// The states of a request. Every state but StatePending is final.
const (
	StatePending   State = "pending"
	StateApproved  State = "approved"
	StateDenied    State = "denied"
	StateExpired   State = "expired"
	StateCancelled State = "cancelled"
	StateRevoked   State = "revoked"
	StateUnknown   State = "unknown"
)

// Resolved reports whether s is final: anything but pending.
func (s State) Resolved() bool { return s != StatePending }

// Request is an access request and, once approved, the approval credentials
// are minted under.
type Request struct {
	// ID identifies the request, for example "r_…".
	ID string
	// State is where the request is in its lifecycle.
	State State
	// Entitlement is the entitlement asked for.
	Entitlement string
	// Requester asked; Beneficiary is the workload the credentials are for
	// (the same SPIFFE ID when a workload asks for itself).
	Requester, Beneficiary string
	// Duration is the approval window asked for, counted from approval.
	Duration time.Duration
	// Reason and Ticket are as given with the request.
	Reason, Ticket string
	// CreatedAt is when the request was made; PendingUntil when it expires
	// unless resolved.
	CreatedAt, PendingUntil time.Time
	// ApprovedAt and WindowEnd bound the approval; zero until approved. No
	// credential outlives WindowEnd.
	ApprovedAt, WindowEnd time.Time
	// ResolvedBy and ResolutionNote say who denied, cancelled or revoked it,
	// and why.
	ResolvedBy, ResolutionNote string
	// Reviews are people's decisions so far.
	Reviews []Review
}

// Review is one person's decision on a request.
type Review struct {
	// Reviewer identifies the person, "oidc:<issuer>#<subject>".
	Reviewer string
	// Decision is "approve" or "deny".
	Decision string
	// Comment is the reviewer's comment.
	Comment string
	// At is when the review was made.
	At time.Time
}

// RequestAccess asks people to approve entitlement for this workload for d,
// counted from the approval, with a reason and an optional ticket. It returns
// the new, pending request; follow it with Watch.
//
// Errors wrap ErrNotFound (no such entitlement), ErrDenied (this workload is
// not a requester), ErrInvalid (d above the entitlement's window, or a reason
// or ticket the policy refuses; the message says why) or ErrUnavailable, and
// ErrClosed after Close.
func (c *Client) RequestAccess(ctx context.Context, entitlement string, d time.Duration, reason, ticket string) (Request, error) {
	if c.isClosed() {
		return Request{}, fmt.Errorf("client: request access to %q: %w", entitlement, ErrClosed)
	}
	resp, err := c.rpc.RequestAccess(ctx, &brokerv1.RequestAccessRequest{
		Entitlement: entitlement, Duration: durationpb.New(d), Reason: reason, Ticket: ticket,
	})
	if err != nil {
		return Request{}, wrapRPC(fmt.Sprintf("request access to %q", entitlement), err)
	}
	return requestFromProto(resp.GetRequest()), nil
}

// Watch blocks until request id is resolved (approved, denied, expired,
// cancelled or revoked) and returns it, or until ctx is done. If the
// connection to the broker breaks while the request is pending, Watch
// reconnects with a capped backoff.
//
// Errors wrap ErrNotFound for a request that does not exist or is another
// workload's, and ErrClosed after Close; when ctx ends first, the error
// wraps ctx's cause.
func (c *Client) Watch(ctx context.Context, id string) (Request, error) {
	op := fmt.Sprintf("watch request %q", id)
	if c.isClosed() {
		return Request{}, fmt.Errorf("client: %s: %w", op, ErrClosed)
	}
	delay := 250 * time.Millisecond
	for {
		r, err := c.watchOnce(ctx, id)
		switch {
		case err == nil:
			return r, nil
		case ctx.Err() != nil:
			return Request{}, fmt.Errorf("client: %s: %w", op, context.Cause(ctx))
		case status.Code(err) != codes.Unavailable:
			return Request{}, wrapRPC(op, err)
		}
		c.log.WarnContext(ctx, "watch interrupted; reconnecting", slog.String("request_id", id), slog.Duration("retry_in", delay), slog.Any("error", err))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return Request{}, fmt.Errorf("client: %s: %w", op, context.Cause(ctx))
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// watchOnce follows one WatchRequest stream until it reports a resolved
// state, and returns that; or the stream's error.
func (c *Client) watchOnce(ctx context.Context, id string) (Request, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.WatchRequest(ctx, &brokerv1.WatchRequestRequest{RequestId: id})
	if err != nil {
		return Request{}, err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			// The broker ends the stream only once the request is resolved.
			return Request{}, status.Error(codes.Unavailable, "watch ended before the request was resolved")
		}
		if err != nil {
			return Request{}, err
		}
		if r := requestFromProto(resp.GetRequest()); r.State.Resolved() {
			return r, nil
		}
	}
}

func requestFromProto(r *brokerv1.AccessRequest) Request {
	out := Request{
		ID:             r.GetId(),
		State:          stateFromProto(r.GetState()),
		Entitlement:    r.GetEntitlement(),
		Requester:      r.GetRequester(),
		Beneficiary:    r.GetBeneficiary(),
		Duration:       r.GetDuration().AsDuration(),
		Reason:         r.GetReason(),
		Ticket:         r.GetTicket(),
		CreatedAt:      timeOf(r.GetCreatedAt()),
		PendingUntil:   timeOf(r.GetPendingUntil()),
		ApprovedAt:     timeOf(r.GetApprovedAt()),
		WindowEnd:      timeOf(r.GetWindowEnd()),
		ResolvedBy:     r.GetResolvedBy(),
		ResolutionNote: r.GetResolutionNote(),
	}
	for _, rv := range r.GetReviews() {
		out.Reviews = append(out.Reviews, Review{Reviewer: rv.GetReviewer(), Decision: rv.GetDecision(), Comment: rv.GetComment(), At: timeOf(rv.GetAt())})
	}
	return out
}

// timeOf returns the zero time for an unset timestamp.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func stateFromProto(s brokerv1.RequestState) State {
	switch s {
	case brokerv1.RequestState_REQUEST_STATE_PENDING:
		return StatePending
	case brokerv1.RequestState_REQUEST_STATE_APPROVED:
		return StateApproved
	case brokerv1.RequestState_REQUEST_STATE_DENIED:
		return StateDenied
	case brokerv1.RequestState_REQUEST_STATE_EXPIRED:
		return StateExpired
	case brokerv1.RequestState_REQUEST_STATE_CANCELLED:
		return StateCancelled
	case brokerv1.RequestState_REQUEST_STATE_REVOKED:
		return StateRevoked
	default:
		return StateUnknown
	}
}
