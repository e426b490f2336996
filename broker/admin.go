package broker

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// requireOperator returns errNotOperator unless the caller is a configured
// operator.
func (s *Server) requireOperator(ctx context.Context) error {
	id, ok := callerFrom(ctx)
	if !ok || !s.operators[id] {
		return fmt.Errorf("%s may not use the admin API (add it to admin.operators): %w", id, errNotOperator)
	}
	return nil
}

// ListEntitlements returns the entitlements of the policy in force.
func (s *Server) ListEntitlements(ctx context.Context, _ *adminv1.ListEntitlementsRequest) (*adminv1.ListEntitlementsResponse, error) {
	if err := s.requireOperator(ctx); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	p := s.policy.Load()
	resp := &adminv1.ListEntitlementsResponse{}
	for _, name := range p.Names() {
		e := p.Entitlements[name]
		out := &adminv1.Entitlement{
			Name:         e.Name,
			Owner:        e.Owner,
			Purpose:      e.Purpose,
			Issuer:       string(e.Recipe.Kind),
			MaxTtl:       durationpb.New(e.MaxTTL),
			ApprovalMode: string(e.Mode),
		}
		for _, r := range e.Requesters {
			out.Requesters = append(out.Requesters, r.Pattern)
		}
		if e.Condition != nil {
			out.Condition = e.Condition.String()
		}
		resp.Entitlements = append(resp.Entitlements, out)
	}
	return resp, nil
}
