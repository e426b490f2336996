package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/notify"
	"github.com/writ-dev/writ/internal/revoke"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// recentGrantsWindow is how far back GetRequest looks for the beneficiary's
// other credentials.
const recentGrantsWindow = 7 * 24 * time.Hour

// Who may call each admin RPC is decided before the handler runs, by the
// rules in authz.go; handlers only read the authorized caller.

// authorized returns the caller the interceptor authorized. Without one the
// handler was reached without the interceptor: fail closed.
func authorized(ctx context.Context) (caller, error) {
	c, ok := callerFrom(ctx)
	if !ok {
		return caller{}, fmt.Errorf("no authorized caller: %w", errNotPermitted)
	}
	return c, nil
}

// personFrom returns the calling person, for RPCs whose rule admits only
// people.
func personFrom(ctx context.Context) (*Person, error) {
	c, ok := callerFrom(ctx)
	if !ok || c.person == nil {
		return nil, fmt.Errorf("sign in as a person (writ login) to do this: %w", errNotPerson)
	}
	return c.person, nil
}

// ListEntitlements returns the entitlements of the policy in force.
func (s *Server) ListEntitlements(_ context.Context, _ *adminv1.ListEntitlementsRequest) (*adminv1.ListEntitlementsResponse, error) {
	p := s.policy.Load()
	resp := &adminv1.ListEntitlementsResponse{}
	for _, name := range p.Names() {
		resp.Entitlements = append(resp.Entitlements, entitlementToProto(p.Entitlements[name]))
	}
	return resp, nil
}

// WhoAmI returns the caller as the broker sees it.
func (s *Server) WhoAmI(ctx context.Context, _ *adminv1.WhoAmIRequest) (*adminv1.WhoAmIResponse, error) {
	c, err := authorized(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &adminv1.WhoAmIResponse{Principal: c.principal().String()}
	if c.person != nil {
		resp.Groups = c.person.Groups
		resp.ExpiresAt = ts(c.person.Expires)
	}
	return resp, nil
}

// ExplainPolicy says whether a workload may have an entitlement and how.
func (s *Server) ExplainPolicy(ctx context.Context, req *adminv1.ExplainPolicyRequest) (*adminv1.ExplainPolicyResponse, error) {
	p, err := approval.ParseWorkload(req.GetSpiffeId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	ex, err := s.policy.Load().Explain(p, req.GetEntitlement())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &adminv1.ExplainPolicyResponse{
		Eligible:     ex.Eligible,
		Rule:         ex.Rule,
		ApprovalMode: string(ex.Mode),
		MaxTtl:       durationpb.New(ex.MaxTTL),
		Condition:    ex.Condition,
		Stages:       stagesToProto(ex.Stages),
	}
	if ex.Window > 0 {
		resp.Window = durationpb.New(ex.Window)
	}
	resp.Summary = summarize(p, ex)
	return resp, nil
}

func summarize(p approval.Principal, ex approval.Explanation) string {
	switch {
	case !ex.Eligible:
		return fmt.Sprintf("%s may not have %q: no requester rule matches it.", p, ex.Entitlement)
	case ex.Mode == approval.ModeAuto && ex.Condition != "":
		return fmt.Sprintf("%s gets %q automatically by %s when %s holds; each credential lasts at most %s.", p, ex.Entitlement, ex.Rule, ex.Condition, ex.MaxTTL)
	case ex.Mode == approval.ModeAuto:
		return fmt.Sprintf("%s gets %q automatically by %s; each credential lasts at most %s.", p, ex.Entitlement, ex.Rule, ex.MaxTTL)
	default:
		need := ""
		for i, st := range ex.Stages {
			if i > 0 {
				need += ", then "
			}
			need += fmt.Sprintf("%d of %v", st.Min, st.Groups)
		}
		return fmt.Sprintf("%s may request %q (%s); it needs approval by %s, lasts at most %s from approval, and each credential at most %s.", p, ex.Entitlement, ex.Rule, need, ex.Window, ex.MaxTTL)
	}
}

// CreateRequest asks for an entitlement on a workload's behalf.
func (s *Server) CreateRequest(ctx context.Context, req *adminv1.CreateRequestRequest) (*adminv1.CreateRequestResponse, error) {
	person, err := personFrom(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	beneficiary, err := approval.ParseWorkload(req.GetBeneficiary())
	if err != nil {
		return nil, s.toStatus(ctx, fmt.Errorf("--for: %w", err))
	}
	r, err := s.submit(ctx, approval.RequestInput{
		Requester:   person.Principal,
		Beneficiary: beneficiary,
		Entitlement: req.GetEntitlement(),
		Duration:    req.GetDuration().AsDuration(),
		Reason:      req.GetReason(),
		Ticket:      req.GetTicket(),
	}, req.GetDuration() != nil && req.GetDuration().CheckValid() != nil)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &adminv1.CreateRequestResponse{Request: requestToProto(r)}, nil
}

// ListRequests lists the requests the caller may see, newest first.
func (s *Server) ListRequests(ctx context.Context, req *adminv1.ListRequestsRequest) (*adminv1.ListRequestsResponse, error) {
	c, err := authorized(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if s.approvals == nil {
		return nil, s.toStatus(ctx, errNoApprovals)
	}
	f := approval.Filter{Limit: 100}
	if n := int(req.GetPageSize()); n > 0 {
		f.Limit = min(n, 1000)
	}
	if req.GetPending() {
		f.States = []approval.State{approval.StatePending}
	}
	if req.GetMine() {
		f.Requester = c.principal()
	}
	rs, err := s.listVisibleRequests(ctx, c, f)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &adminv1.ListRequestsResponse{}
	for _, r := range rs {
		resp.Requests = append(resp.Requests, requestToProto(r))
	}
	return resp, nil
}

// GetRequest returns a request with what a reviewer needs to decide.
func (s *Server) GetRequest(ctx context.Context, req *adminv1.GetRequestRequest) (*adminv1.GetRequestResponse, error) {
	c, err := authorized(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if s.approvals == nil {
		return nil, s.toStatus(ctx, errNoApprovals)
	}
	r, err := s.visibleRequest(ctx, c, req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &adminv1.GetRequestResponse{Request: requestToProto(r)}
	if e, err := s.policy.Load().Lookup(r.Entitlement); err == nil {
		lim, _ := s.issuerLimit(ctx, e)
		window := r.Duration
		if r.State == approval.StateApproved {
			window = r.WindowEnd.Sub(s.now())
		}
		resp.EffectiveTtl = durationpb.New(approval.EffectiveTTL(e, window, lim))
		for _, st := range approval.Needs(r, e) {
			out := &adminv1.StageStatus{Groups: st.Groups, Min: int32(st.Min), Have: int32(st.Have)}
			for _, a := range st.Approvers {
				out.Approvers = append(out.Approvers, a.String())
			}
			resp.Stages = append(resp.Stages, out)
		}
	}
	grants, err := s.approvals.Grants(ctx, r.ID)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	for _, g := range grants {
		resp.Grants = append(resp.Grants, grantToProto(g))
	}
	recent, err := s.approvals.GrantsFor(ctx, r.Beneficiary, s.now().Add(-recentGrantsWindow), 10)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	for _, g := range recent {
		resp.RecentGrants = append(resp.RecentGrants, grantToProto(g))
	}
	return resp, nil
}

// ApproveRequest records the caller's approval.
func (s *Server) ApproveRequest(ctx context.Context, req *adminv1.ApproveRequestRequest) (*adminv1.ApproveRequestResponse, error) {
	r, err := s.review(ctx, req.GetId(), approval.DecisionApprove, req.GetComment())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &adminv1.ApproveRequestResponse{Request: requestToProto(r)}, nil
}

// DenyRequest denies a pending request.
func (s *Server) DenyRequest(ctx context.Context, req *adminv1.DenyRequestRequest) (*adminv1.DenyRequestResponse, error) {
	r, err := s.review(ctx, req.GetId(), approval.DecisionDeny, req.GetComment())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &adminv1.DenyRequestResponse{Request: requestToProto(r)}, nil
}

// review applies a person's decision and records it, refusals included.
func (s *Server) review(ctx context.Context, id string, d approval.Decision, comment string) (approval.Request, error) {
	person, err := personFrom(ctx)
	if err != nil {
		return approval.Request{}, err
	}
	if s.approvals == nil {
		return approval.Request{}, errNoApprovals
	}
	r, err := s.approvals.Review(ctx, id, approval.Review{Reviewer: person.Principal, Groups: person.Groups, Decision: d, Comment: comment})
	if err != nil {
		// Every refused review is evidence (T19, T20): record who tried what.
		before, gerr := s.approvals.Get(context.WithoutCancel(ctx), id)
		if gerr != nil {
			before = approval.Request{ID: truncate(id, 64)}
		}
		ev := requestEvent(ActionReviewRefused, outcomeOf(err), person.Principal, before, err.Error(), map[string]string{"decision": string(d), "groups": fmt.Sprint(person.Groups)})
		if _, lerr := s.record(context.WithoutCancel(ctx), ev); lerr != nil {
			return approval.Request{}, fmt.Errorf("record refused review (%v): %w: %w", err, errLedger, lerr)
		}
		return approval.Request{}, err
	}
	last := r.Reviews[len(r.Reviews)-1]
	details := map[string]string{"decision": string(d), "stage": fmt.Sprint(last.Stage), "groups": fmt.Sprint(person.Groups)}
	if _, err := s.record(context.WithoutCancel(ctx), requestEvent(ActionReview, string(d), person.Principal, r, comment, details)); err != nil {
		return approval.Request{}, fmt.Errorf("record review of %s: %w: %w", id, errLedger, err)
	}
	switch r.State {
	case approval.StateApproved:
		details := map[string]string{"approved_at": r.ApprovedAt.Format(time.RFC3339Nano), "window_end": r.WindowEnd.Format(time.RFC3339Nano)}
		if _, err := s.record(context.WithoutCancel(ctx), requestEvent(ActionApprove, "approved", person.Principal, r, "", details)); err != nil {
			return approval.Request{}, fmt.Errorf("record approval of %s: %w: %w", id, errLedger, err)
		}
		s.notifier.Notify(ctx, notify.Event{Kind: "request.approved", RequestID: r.ID, Entitlement: r.Entitlement,
			Beneficiary: r.Beneficiary.String(), Actor: person.Principal.String(), Until: r.WindowEnd})
	case approval.StateDenied:
		if _, err := s.record(context.WithoutCancel(ctx), requestEvent(ActionDenyRequest, "denied", person.Principal, r, comment, nil)); err != nil {
			return approval.Request{}, fmt.Errorf("record denial of %s: %w: %w", id, errLedger, err)
		}
		s.notifier.Notify(ctx, notify.Event{Kind: "request.denied", RequestID: r.ID, Entitlement: r.Entitlement,
			Beneficiary: r.Beneficiary.String(), Actor: person.Principal.String(), Reason: comment})
	}
	s.log.InfoContext(ctx, "request reviewed", slog.String("request_id", id), slog.String("reviewer", person.Principal.String()),
		slog.String("decision", string(d)), slog.String("state", string(r.State)))
	return r, nil
}

// RevokeRequest revokes an approval and every credential minted under it.
func (s *Server) RevokeRequest(ctx context.Context, req *adminv1.RevokeRequestRequest) (*adminv1.RevokeRequestResponse, error) {
	c, err := authorized(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if s.approvals == nil {
		return nil, s.toStatus(ctx, errNoApprovals)
	}
	before, err := s.visibleRequest(ctx, c, req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := s.mayRevoke(c, before); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	r, grants, err := s.approvals.Revoke(ctx, req.GetId(), c.principal(), req.GetReason())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	receipt, err := s.revokeUnder(ctx, c.principal(), r, ActionRevokeApproval, req.GetReason(), grants)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	s.notifier.Notify(ctx, notify.Event{Kind: "request.revoked", RequestID: r.ID, Entitlement: r.Entitlement,
		Beneficiary: r.Beneficiary.String(), Actor: c.principal().String(), Reason: req.GetReason(),
		Fields: map[string]string{"credentials": fmt.Sprint(len(receipt.Results))}})
	resp := &adminv1.RevokeRequestResponse{Request: requestToProto(r)}
	for _, res := range receipt.Results {
		resp.Results = append(resp.Results, &adminv1.RevocationResult{
			GrantId: res.GrantID, Kind: string(res.Ref.Kind), Reference: res.Ref.ID, Outcome: string(res.Outcome), Error: res.Error,
		})
	}
	return resp, nil
}

// visibleRequest returns request id if c may see it; otherwise, and if it
// does not exist, the same NotFound.
func (s *Server) visibleRequest(ctx context.Context, c caller, id string) (approval.Request, error) {
	r, err := s.approvals.Get(ctx, id)
	switch {
	case errors.Is(err, approval.ErrNotFound):
		return approval.Request{}, notVisible("request", id)
	case err != nil:
		return approval.Request{}, err
	case !s.maySeeRequest(c, r):
		return approval.Request{}, notVisible("request", id)
	}
	return r, nil
}

// mayRevoke allows operators, the requester, and anyone who could approve
// the entitlement.
func (s *Server) mayRevoke(c caller, r approval.Request) error {
	if c.operator || (c.person != nil && c.person.Principal == r.Requester) {
		return nil
	}
	if c.person == nil {
		return fmt.Errorf("%s is not an operator: %w", c.workload, errNotOperator)
	}
	if e, err := s.policy.Load().Lookup(r.Entitlement); err == nil {
		for _, g := range c.person.Groups {
			if slices.Contains(stageGroups(e), g) {
				return nil
			}
		}
	}
	return fmt.Errorf("%s is neither the requester nor an approver of %q: %w", c.person.Principal, r.Entitlement, errNotOperator)
}

// revokeUnder revokes the credentials minted under r and records the receipt:
// one record for the approval, one per credential.
func (s *Server) revokeUnder(ctx context.Context, actor approval.Principal, r approval.Request, action, reason string, grants []approval.GrantRecord) (revoke.Receipt, error) {
	receipt := s.revoker.RevokeAll(context.WithoutCancel(ctx), r.ID, grants)
	counts := receipt.Counts()
	details := map[string]string{"credentials": fmt.Sprint(len(receipt.Results))}
	for outcome, n := range counts {
		details[string(outcome)] = fmt.Sprint(n)
	}
	if _, err := s.record(context.WithoutCancel(ctx), requestEvent(action, string(r.State), actor, r, reason, details)); err != nil {
		return receipt, fmt.Errorf("record %s of %s: %w: %w", action, r.ID, errLedger, err)
	}
	for _, res := range receipt.Results {
		ev := requestEvent(ActionCredentialRevoked, string(res.Outcome), actor, r, res.Error, nil)
		ev.GrantID, ev.CredentialKind, ev.CredentialRef, ev.Expires = res.GrantID, string(res.Ref.Kind), res.Ref.ID, res.Ref.Expires
		if _, err := s.record(context.WithoutCancel(ctx), ev); err != nil {
			return receipt, fmt.Errorf("record revocation of %s: %w: %w", res.GrantID, errLedger, err)
		}
	}
	return receipt, nil
}

// RunExpiry moves requests and approvals past their deadlines to expired,
// revokes what was minted under expired approvals and escalates overdue
// break-glass reviews, every interval until ctx is done. Several replicas
// may run it: each request is expired, and each review escalated, once.
func (s *Server) RunExpiry(ctx context.Context, interval time.Duration) {
	if s.approvals == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.ExpireOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ExpireOnce runs one pass of RunExpiry: it expires requests and approvals,
// and escalates overdue break-glass reviews.
func (s *Server) ExpireOnce(ctx context.Context) {
	defer s.EscalateOnce(ctx)
	expired, err := s.approvals.ExpireDue(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "expire requests", slog.Any("error", err))
	}
	for _, r := range expired {
		grants, err := s.approvals.Grants(ctx, r.ID)
		if err != nil {
			s.log.ErrorContext(ctx, "list grants of expired approval", slog.String("request_id", r.ID), slog.Any("error", err))
			continue
		}
		if _, err := s.revokeUnder(ctx, "writd", r, ActionExpire, "deadline passed", grants); err != nil {
			s.log.ErrorContext(ctx, "record expiry", slog.String("request_id", r.ID), slog.Any("error", err))
		}
	}
}
