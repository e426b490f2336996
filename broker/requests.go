package broker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/notify"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Ledger actions written for requests and approvals.
const (
	ActionRequest           = "request"
	ActionRequestRefused    = "request_refused"
	ActionReview            = "review"
	ActionReviewRefused     = "review_refused"
	ActionApprove           = "approve"
	ActionDenyRequest       = "deny_request"
	ActionRevokeApproval    = "revoke_approval"
	ActionExpire            = "expire"
	ActionCredentialRevoked = "credential_revoked"
)

// watchPoll is how often a watch re-reads the store, to see changes made by
// other replicas or by expiry.
const watchPoll = 2 * time.Second

// RequestAccess asks people to approve an entitlement for the calling workload.
func (s *Server) RequestAccess(ctx context.Context, req *brokerv1.RequestAccessRequest) (*brokerv1.RequestAccessResponse, error) {
	id, ok := workloadFrom(ctx)
	if !ok {
		return nil, s.toStatus(ctx, fmt.Errorf("RequestAccess is for workloads: %w", errNotWorkload))
	}
	p := approval.Principal(id.String())
	r, err := s.submit(ctx, approval.RequestInput{
		Requester:   p,
		Beneficiary: p,
		Entitlement: req.GetEntitlement(),
		Duration:    req.GetDuration().AsDuration(),
		Reason:      req.GetReason(),
		Ticket:      req.GetTicket(),
	}, req.GetDuration() != nil && req.GetDuration().CheckValid() != nil)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &brokerv1.RequestAccessResponse{Request: requestToProto(r)}, nil
}

// submit validates, stores, records and announces a new request. A refusal
// is recorded too.
func (s *Server) submit(ctx context.Context, in approval.RequestInput, badDuration bool) (approval.Request, error) {
	if s.approvals == nil {
		return approval.Request{}, errNoApprovals
	}
	refuse := func(err error) (approval.Request, error) {
		ev := audit.Event{Action: ActionRequestRefused, Actor: in.Requester.String(), Subject: in.Beneficiary.String(),
			Entitlement: in.Entitlement, Outcome: outcomeOf(err), Reason: reasonOf(err), TTL: in.Duration}
		if _, lerr := s.record(context.WithoutCancel(ctx), ev); lerr != nil {
			return approval.Request{}, fmt.Errorf("record refusal (%v): %w: %w", err, errLedger, lerr)
		}
		return approval.Request{}, err
	}
	switch {
	case badDuration:
		return refuse(fmt.Errorf("duration is not a valid duration: %w", errBadRequest))
	case !entitlementName.MatchString(in.Entitlement):
		in.Entitlement = truncate(in.Entitlement, 64)
		return refuse(fmt.Errorf("entitlement name %q is not a valid name: %w", in.Entitlement, errBadRequest))
	}
	e, err := s.policy.Load().Lookup(in.Entitlement)
	if err != nil {
		return refuse(err)
	}
	if err := s.checkIssuerLimit(ctx, e, in.Duration); err != nil {
		return refuse(err)
	}
	in.ID = newRequestID()
	var r approval.Request
	err = s.commitDecision(ctx, func(ctx context.Context, d *decision) error {
		var err error
		if r, err = d.svc.Submit(ctx, in); err != nil {
			return err
		}
		return d.record(requestEvent(ActionRequest, "pending", in.Requester, r, r.Reason, nil))
	})
	switch {
	case isUnrecorded(err):
		return approval.Request{}, fmt.Errorf("request %s: %w", in.ID, err)
	case err != nil:
		return refuse(err)
	}
	s.notifier.Notify(ctx, notify.Event{
		Kind: "request.pending", RequestID: r.ID, Entitlement: r.Entitlement, Beneficiary: r.Beneficiary.String(),
		Actor: r.Requester.String(), Reason: r.Reason, Until: r.PendingUntil, Recipients: stageGroups(e),
		Fields: map[string]string{"duration": r.Duration.String(), "ticket": r.Ticket},
	})
	s.log.InfoContext(ctx, "access requested", slog.String("request_id", r.ID), slog.String("entitlement", r.Entitlement),
		slog.String("beneficiary", r.Beneficiary.String()), slog.String("requester", r.Requester.String()))
	return r, nil
}

// checkIssuerLimit refuses a request whose credentials the issuer could not
// honour: nothing is silently capped.
func (s *Server) checkIssuerLimit(ctx context.Context, e *approval.Entitlement, window time.Duration) error {
	lim, err := s.issuerLimit(ctx, e)
	if err != nil || lim == 0 {
		return err
	}
	want := min(e.MaxTTL, window)
	if window <= 0 {
		want = e.MaxTTL
	}
	if lim < want {
		return fmt.Errorf("entitlement %q: the issuer allows credentials of at most %s, less than the %s this approval would need; lower max_ttl or raise the issuer's limit: %w",
			e.Name, lim, want, approval.ErrTTLTooLong)
	}
	return nil
}

func (s *Server) issuerLimit(ctx context.Context, e *approval.Entitlement) (time.Duration, error) {
	l, ok := s.issuers[e.Recipe.Kind].(IssuerLimiter)
	if !ok {
		return 0, nil
	}
	lim, err := l.MaxTTL(ctx, e.Recipe)
	if err != nil {
		return 0, fmt.Errorf("read issuer limits for %q: %w: %w", e.Name, errIssuer, err)
	}
	return lim, nil
}

// WatchRequest streams a request's state until it is resolved.
func (s *Server) WatchRequest(req *brokerv1.WatchRequestRequest, stream brokerv1.BrokerService_WatchRequestServer) error {
	ctx := stream.Context()
	id, ok := workloadFrom(ctx)
	if !ok {
		return s.toStatus(ctx, fmt.Errorf("WatchRequest is for workloads: %w", errNotWorkload))
	}
	if s.approvals == nil {
		return s.toStatus(ctx, errNoApprovals)
	}
	wake, unsubscribe := s.watch.subscribe(req.GetRequestId())
	defer unsubscribe()
	r, err := s.approvals.Get(ctx, req.GetRequestId())
	if err != nil || r.Beneficiary != approval.Principal(id.String()) {
		// Another workload's request is indistinguishable from none.
		return s.toStatus(ctx, fmt.Errorf("request %q: %w", truncate(req.GetRequestId(), 64), approval.ErrNotFound))
	}
	ticker := time.NewTicker(watchPoll)
	defer ticker.Stop()
	for {
		if err := stream.Send(&brokerv1.WatchRequestResponse{Request: requestToProto(r)}); err != nil {
			return err
		}
		if r.State != approval.StatePending {
			return nil
		}
		for {
			select {
			case <-ctx.Done():
				return s.toStatus(ctx, ctx.Err())
			case <-wake:
			case <-ticker.C:
			}
			next, err := s.approvals.Get(ctx, r.ID)
			if err != nil {
				return s.toStatus(ctx, err)
			}
			if next.State != r.State || len(next.Reviews) != len(r.Reviews) {
				r = next
				break
			}
		}
	}
}

func requestEvent(action, outcome string, actor approval.Principal, r approval.Request, reason string, details map[string]string) audit.Event {
	d := map[string]string{"request_id": r.ID}
	for k, v := range details {
		d[k] = v
	}
	return audit.Event{
		Action:      action,
		Actor:       actor.String(),
		Subject:     r.Beneficiary.String(),
		Entitlement: r.Entitlement,
		Rule:        r.Rule,
		Outcome:     outcome,
		Reason:      truncate(reason, 512),
		TTL:         r.Duration,
		Details:     d,
	}
}

func stageGroups(e *approval.Entitlement) []string {
	var out []string
	seen := map[string]bool{}
	for _, st := range e.Stages {
		for _, g := range st.Groups {
			if !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	return out
}

func newRequestID() string { return "r_" + NewGrantID()[2:] }
