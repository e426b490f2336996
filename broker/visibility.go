package broker

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/writ-dev/writ/approval"
)

// Who sees which requests and break-glass uses. Operators and auditors see
// everything. A person sees a request they asked for or benefit from, or
// one they may review (they are in a group of one of its entitlement's
// approval stages); a break-glass use they took or benefit from, or one
// they may review (a reviewer group of its entitlement). Anything else is
// reported as not found, exactly like a request that does not exist.

// maySeeRequest reports whether c may see r.
func (s *Server) maySeeRequest(c caller, r approval.Request) bool {
	if c.seesAll() {
		return true
	}
	if c.person == nil {
		return false
	}
	p := c.person.Principal
	if r.Requester == p || r.Beneficiary == p {
		return true
	}
	e, err := s.policy.Load().Lookup(r.Entitlement)
	return err == nil && anyOf(c.person.Groups, stageGroups(e))
}

// maySeeBreakGlass reports whether c may see bg.
func (s *Server) maySeeBreakGlass(c caller, bg approval.BreakGlass) bool {
	if c.seesAll() {
		return true
	}
	if c.person == nil {
		return false
	}
	p := c.person.Principal
	if bg.Taker == p || bg.Beneficiary == p {
		return true
	}
	e, err := s.policy.Load().Lookup(bg.Entitlement)
	return err == nil && e.BreakGlass != nil && anyOf(c.person.Groups, e.BreakGlass.ReviewerGroups)
}

// listVisibleRequests lists the requests matching f that c may see, newest
// first, at most f.Limit. For a person it asks the store once for their own
// requests, once for those they benefit from, and once per entitlement they
// may review, and merges the answers.
func (s *Server) listVisibleRequests(ctx context.Context, c caller, f approval.Filter) ([]approval.Request, error) {
	if c.seesAll() {
		return s.approvals.List(ctx, f)
	}
	if c.person == nil {
		return nil, nil
	}
	p := c.person.Principal
	var queries []approval.Filter
	if f.Requester == "" || f.Requester == p {
		q := f
		q.Requester = p
		queries = append(queries, q)
	}
	if f.Requester == "" {
		q := f
		q.Beneficiary = p
		queries = append(queries, q)
		pol := s.policy.Load()
		for _, name := range pol.Names() {
			if anyOf(c.person.Groups, stageGroups(pol.Entitlements[name])) {
				q := f
				q.Entitlement = name
				queries = append(queries, q)
			}
		}
	}
	seen := map[string]bool{}
	var out []approval.Request
	for _, q := range queries {
		rs, err := s.approvals.List(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if !seen[r.ID] {
				seen[r.ID] = true
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b approval.Request) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// listVisibleBreakGlass lists the break-glass uses matching f that c may
// see, newest first, at most f.Limit. A person who reviews no break-glass
// entitlement is asked about only their own uses; a reviewer's list is
// filtered here, as break-glass uses are few.
func (s *Server) listVisibleBreakGlass(ctx context.Context, c caller, f approval.BreakGlassFilter) ([]approval.BreakGlass, error) {
	if c.seesAll() {
		return s.approvals.ListBreakGlass(ctx, f)
	}
	if c.person == nil {
		return nil, nil
	}
	if !s.reviewsBreakGlass(c.person.Groups) {
		f.Taker = c.person.Principal
		return s.approvals.ListBreakGlass(ctx, f)
	}
	limit := f.Limit
	f.Limit = 0
	all, err := s.approvals.ListBreakGlass(ctx, f)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, bg := range all {
		if s.maySeeBreakGlass(c, bg) {
			out = append(out, bg)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// reviewsBreakGlass reports whether groups include a break-glass reviewer
// group of any entitlement.
func (s *Server) reviewsBreakGlass(groups []string) bool {
	for _, e := range s.policy.Load().Entitlements {
		if e.BreakGlass != nil && anyOf(groups, e.BreakGlass.ReviewerGroups) {
			return true
		}
	}
	return false
}

// notVisible is the error for a record the caller may not see: the same as
// for one that does not exist.
func notVisible(kind, id string) error {
	return fmt.Errorf("%s %q: %w", kind, truncate(id, 64), approval.ErrNotFound)
}
