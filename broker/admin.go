package broker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/notify"
	"github.com/writ-dev/writ/internal/revoke"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// recentGrantsWindow is how far back GetRequest looks for the beneficiary's
// other credentials.
const recentGrantsWindow = 7 * 24 * time.Hour

// adminCaller returns a person, or a workload listed as an operator.
func (s *Server) adminCaller(ctx context.Context) (caller, error) {
	c, ok := callerFrom(ctx)
	switch {
	case !ok:
		return caller{}, fmt.Errorf("no authenticated caller: %w", errNotOperator)
	case c.person != nil:
		return c, nil
	case s.operators[c.workload]:
		return c, nil
	default:
		return caller{}, fmt.Errorf("%s may not use the admin API (add it to admin.operators): %w", c.workload, errNotOperator)
	}
}

// personFrom returns the calling person: reviews are made by people.
func personFrom(ctx context.Context) (*Person, error) {
	c, ok := callerFrom(ctx)
	if !ok || c.person == nil {
		return nil, fmt.Errorf("sign in as a person (writ login) to do this: %w", errNotPerson)
	}
	return c.person, nil
}

// ListEntitlements returns the entitlements of the policy in force.
func (s *Server) ListEntitlements(ctx context.Context, _ *adminv1.ListEntitlementsRequest) (*adminv1.ListEntitlementsResponse, error) {
	if _, err := s.adminCaller(ctx); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	p := s.policy.Load()
	resp := &adminv1.ListEntitlementsResponse{}
	for _, name := range p.Names() {
		resp.Entitlements = append(resp.Entitlements, entitlementToProto(p.Entitlements[name]))
	}
	return resp, nil
}

// WhoAmI returns the caller as the broker sees it.
func (s *Server) WhoAmI(ctx context.Context, _ *adminv1.WhoAmIRequest) (*adminv1.WhoAmIResponse, error) {
	c, err := s.adminCaller(ctx)
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
	if _, err := s.adminCaller(ctx); err != nil {
		return nil, s.toStatus(ctx, err)
	}
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

// ListRequests lists requests, newest first.
func (s *Server) ListRequests(ctx context.Context, req *adminv1.ListRequestsRequest) (*adminv1.ListRequestsResponse, error) {
	c, err := s.adminCaller(ctx)
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
	rs, err := s.approvals.List(ctx, f)
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
	if _, err := s.adminCaller(ctx); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if s.approvals == nil {
		return nil, s.toStatus(ctx, errNoApprovals)
	}
	r, err := s.approvals.Get(ctx, req.GetId())
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

// review applies a person's decision and records it, refusals included,
// in one transaction: the review, its record and, when it completes the
// request, the approval or denial record commit together or not at all.
func (s *Server) review(ctx context.Context, id string, d approval.Decision, comment string) (approval.Request, error) {
	person, err := personFrom(ctx)
	if err != nil {
		return approval.Request{}, err
	}
	if s.approvals == nil {
		return approval.Request{}, errNoApprovals
	}
	var (
		r       approval.Request
		refused error
		expired revoke.Plan
	)
	err = s.commitDecision(ctx, func(ctx context.Context, dc *decision) error {
		refused, expired = nil, revoke.Plan{}
		var err error
		r, err = dc.svc.Review(ctx, id, approval.Review{Reviewer: person.Principal, Groups: person.Groups, Decision: d, Comment: comment})
		if err != nil {
			// Every refused review is evidence (T19, T20): record who tried what.
			refused = err
			before := r
			if r.ID != "" {
				// The request had expired: that is stored now, and recorded with it.
				if expired, err = dc.expired(ctx, r); err != nil {
					return err
				}
			} else if before, err = dc.svc.Get(ctx, id); err != nil {
				before = approval.Request{ID: truncate(id, 64)}
			}
			ev := requestEvent(ActionReviewRefused, outcomeOf(refused), person.Principal, before, refused.Error(), map[string]string{"decision": string(d), "groups": fmt.Sprint(person.Groups)})
			if err := dc.record(ev); err != nil {
				return fmt.Errorf("record refused review (%v): %w", refused, err)
			}
			return nil
		}
		last := r.Reviews[len(r.Reviews)-1]
		details := map[string]string{"decision": string(d), "stage": fmt.Sprint(last.Stage), "groups": fmt.Sprint(person.Groups)}
		if err := dc.record(requestEvent(ActionReview, string(d), person.Principal, r, comment, details)); err != nil {
			return fmt.Errorf("record review of %s: %w", id, err)
		}
		switch r.State {
		case approval.StateApproved:
			details := map[string]string{"approved_at": r.ApprovedAt.Format(time.RFC3339Nano), "window_end": r.WindowEnd.Format(time.RFC3339Nano)}
			if err := dc.record(requestEvent(ActionApprove, "approved", person.Principal, r, "", details)); err != nil {
				return fmt.Errorf("record approval of %s: %w", id, err)
			}
		case approval.StateDenied:
			if err := dc.record(requestEvent(ActionDenyRequest, "denied", person.Principal, r, comment, nil)); err != nil {
				return fmt.Errorf("record denial of %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return approval.Request{}, err
	}
	if refused != nil {
		if r.ID != "" {
			s.watch.changed(r.ID)
			s.finishRevocation(ctx, expired, s.credentialRevokedUnder(r, "writd"))
		}
		return approval.Request{}, refused
	}
	switch r.State {
	case approval.StateApproved:
		s.notifier.Notify(ctx, notify.Event{Kind: "request.approved", RequestID: r.ID, Entitlement: r.Entitlement,
			Beneficiary: r.Beneficiary.String(), Actor: person.Principal.String(), Until: r.WindowEnd})
	case approval.StateDenied:
		s.notifier.Notify(ctx, notify.Event{Kind: "request.denied", RequestID: r.ID, Entitlement: r.Entitlement,
			Beneficiary: r.Beneficiary.String(), Actor: person.Principal.String(), Reason: comment})
	}
	s.watch.changed(id)
	s.log.InfoContext(ctx, "request reviewed", slog.String("request_id", id), slog.String("reviewer", person.Principal.String()),
		slog.String("decision", string(d)), slog.String("state", string(r.State)))
	return r, nil
}

// credentialRevokedUnder returns the credential_revoked record of one
// credential minted under r.
func (s *Server) credentialRevokedUnder(r approval.Request, actor approval.Principal) func(revoke.Result) audit.Event {
	return func(res revoke.Result) audit.Event {
		return requestEvent(ActionCredentialRevoked, string(res.Outcome), actor, r, res.Error, nil)
	}
}

// RevokeRequest revokes an approval and every credential minted under it.
func (s *Server) RevokeRequest(ctx context.Context, req *adminv1.RevokeRequestRequest) (*adminv1.RevokeRequestResponse, error) {
	c, err := s.adminCaller(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if s.approvals == nil {
		return nil, s.toStatus(ctx, errNoApprovals)
	}
	before, err := s.approvals.Get(ctx, req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := s.mayRevoke(c, before); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	// The revocation, its record and a queue entry for every live credential
	// under it commit together: a crash leaves all of them or none (T41).
	// Revoking again re-queues what is still live.
	var (
		rv      approval.Revocation
		plan    revoke.Plan
		refused error
	)
	err = s.commitDecision(ctx, func(ctx context.Context, d *decision) error {
		refused = nil
		var err error
		if rv, err = d.svc.Revoke(ctx, req.GetId(), c.principal(), req.GetReason()); err != nil {
			if rv.Request.ID == "" {
				return err
			}
			// The request had expired: that is stored now, and recorded with it.
			refused = err
			plan, err = d.expired(ctx, rv.Request)
			return err
		}
		if plan, err = d.queue(rv.Request.ID, rv.Grants); err != nil {
			return err
		}
		r := rv.Request
		return d.record(requestEvent(ActionRevokeApproval, string(r.State), c.principal(), r, req.GetReason(), planDetails(plan, rv.Again)))
	})
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	r := rv.Request
	s.watch.changed(r.ID)
	if refused != nil {
		s.finishRevocation(ctx, plan, s.credentialRevokedUnder(r, "writd"))
		return nil, s.toStatus(ctx, refused)
	}
	receipt := s.finishRevocation(ctx, plan, s.credentialRevokedUnder(r, c.principal()))
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

// mayRevoke allows operators, the requester, and anyone who could approve
// the entitlement.
func (s *Server) mayRevoke(c caller, r approval.Request) error {
	if c.person == nil || c.person.Principal == r.Requester {
		return nil // operators (adminCaller checked) and the requester
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
// each in one transaction with its expire record and the revocation queue
// entries of the credentials under it, then attempts those revocations,
// and escalates overdue break-glass reviews.
func (s *Server) ExpireOnce(ctx context.Context) {
	defer s.EscalateOnce(ctx)
	due, err := s.approvals.Due(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "expire requests", slog.Any("error", err))
		return
	}
	for _, cand := range due {
		if ctx.Err() != nil {
			return
		}
		var (
			r       approval.Request
			changed bool
			plan    revoke.Plan
		)
		err := s.commitDecision(ctx, func(ctx context.Context, d *decision) error {
			var err error
			if r, changed, err = d.svc.ExpireOne(ctx, cand.ID); err != nil || !changed {
				return err
			}
			plan, err = d.expired(ctx, r)
			return err
		})
		if err != nil {
			s.log.ErrorContext(ctx, "expire request", slog.String("request_id", cand.ID), slog.Any("error", err))
			continue
		}
		if !changed {
			continue // another replica, or a review, got there first
		}
		s.watch.changed(r.ID)
		s.finishRevocation(ctx, plan, s.credentialRevokedUnder(r, "writd"))
	}
}
