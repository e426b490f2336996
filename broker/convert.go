package broker

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/writ-dev/writ/approval"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func requestToProto(r approval.Request) *brokerv1.AccessRequest {
	out := &brokerv1.AccessRequest{
		Id:             r.ID,
		Requester:      r.Requester.String(),
		Beneficiary:    r.Beneficiary.String(),
		Entitlement:    r.Entitlement,
		Duration:       durationpb.New(r.Duration),
		Reason:         r.Reason,
		Ticket:         r.Ticket,
		State:          stateToProto(r.State),
		CreatedAt:      ts(r.CreatedAt),
		PendingUntil:   ts(r.PendingUntil),
		ApprovedAt:     ts(r.ApprovedAt),
		WindowEnd:      ts(r.WindowEnd),
		ResolvedBy:     r.ResolvedBy.String(),
		ResolutionNote: r.ResolutionNote,
		Rule:           r.Rule,
	}
	for _, rv := range r.Reviews {
		out.Reviews = append(out.Reviews, &brokerv1.Review{
			Reviewer: rv.Reviewer.String(),
			Decision: string(rv.Decision),
			Comment:  rv.Comment,
			Stage:    int32(rv.Stage),
			At:       ts(rv.At),
		})
	}
	return out
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func stateToProto(s approval.State) brokerv1.RequestState {
	switch s {
	case approval.StatePending:
		return brokerv1.RequestState_REQUEST_STATE_PENDING
	case approval.StateApproved:
		return brokerv1.RequestState_REQUEST_STATE_APPROVED
	case approval.StateDenied:
		return brokerv1.RequestState_REQUEST_STATE_DENIED
	case approval.StateExpired:
		return brokerv1.RequestState_REQUEST_STATE_EXPIRED
	case approval.StateCancelled:
		return brokerv1.RequestState_REQUEST_STATE_CANCELLED
	case approval.StateRevoked:
		return brokerv1.RequestState_REQUEST_STATE_REVOKED
	default:
		return brokerv1.RequestState_REQUEST_STATE_UNSPECIFIED
	}
}

func stagesToProto(stages []approval.Stage) []*adminv1.Stage {
	out := make([]*adminv1.Stage, 0, len(stages))
	for _, st := range stages {
		out = append(out, &adminv1.Stage{Groups: st.Groups, Min: int32(st.Min)})
	}
	return out
}

func grantToProto(g approval.GrantRecord) *adminv1.GrantSummary {
	return &adminv1.GrantSummary{
		GrantId:   g.GrantID,
		RequestId: g.RequestID,
		Kind:      string(g.Ref.Kind),
		Reference: g.Ref.ID,
		IssuedAt:  ts(g.IssuedAt),
		ExpiresAt: ts(g.Ref.Expires),
	}
}

func entitlementToProto(e *approval.Entitlement) *adminv1.Entitlement {
	out := &adminv1.Entitlement{
		Name:         e.Name,
		Owner:        e.Owner,
		Purpose:      e.Purpose,
		Issuer:       string(e.Recipe.Kind),
		MaxTtl:       durationpb.New(e.MaxTTL),
		ApprovalMode: string(e.Mode),
		Stages:       stagesToProto(e.Stages),
	}
	if e.Window > 0 {
		out.Window = durationpb.New(e.Window)
	}
	for _, r := range e.Requesters {
		out.Requesters = append(out.Requesters, r.Pattern)
	}
	if e.Condition != nil {
		out.Condition = e.Condition.String()
	}
	return out
}

func credentialToProto(c approval.Credential, grantID, entitlement string, breakGlass bool) *brokerv1.Credential {
	return &brokerv1.Credential{
		GrantId:     grantID,
		Entitlement: entitlement,
		Kind:        kindToProto(c.Ref.Kind),
		Secret:      string(c.Secret),
		Reference:   c.Ref.ID,
		IssuedAt:    ts(c.IssuedAt),
		ExpiresAt:   ts(c.Ref.Expires),
		BreakGlass:  breakGlass,
		Data:        dataToProto(c.Data),
	}
}

func dataToProto(d map[string]approval.Secret) map[string]string {
	if len(d) == 0 {
		return nil
	}
	out := make(map[string]string, len(d))
	for k, v := range d {
		out[k] = string(v)
	}
	return out
}
