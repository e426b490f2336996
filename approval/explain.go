package approval

import (
	"slices"
	"time"
)

// Explanation says what the policy would do with a request: whether the
// principal is eligible, by which rule, and what approval it needs.
type Explanation struct {
	// Entitlement is the entitlement's name.
	Entitlement string
	// Eligible reports whether a requester rule covers the principal.
	Eligible bool
	// Rule is the requester rule that matched, or "".
	Rule string
	// Mode is how requests are approved.
	Mode Mode
	// MaxTTL is the longest a credential may live.
	MaxTTL time.Duration
	// Window is the longest an approval may last (ModeApprovers).
	Window time.Duration
	// Condition is the source of the auto-approval condition, or "".
	Condition string
	// Stages are the approvals needed (ModeApprovers).
	Stages []Stage
	// Reason is the rule reasons must follow.
	Reason ReasonRule
	// TicketPattern, if set, is what tickets must match.
	TicketPattern string
}

// Explain reports whether principal may request the named entitlement, by
// which rule, and what approvals it needs. A principal that is not eligible
// is not an error: Eligible is false. It returns ErrUnknownEntitlement if the
// policy has no such entitlement.
func (p *Policy) Explain(principal Principal, entitlement string) (Explanation, error) {
	e, err := p.Lookup(entitlement)
	if err != nil {
		return Explanation{}, err
	}
	x := Explanation{
		Entitlement:   e.Name,
		Mode:          e.Mode,
		MaxTTL:        e.MaxTTL,
		Window:        e.Window,
		Reason:        e.Reason,
		TicketPattern: e.TicketPattern,
	}
	x.Rule, x.Eligible = e.Eligible(principal)
	if e.Condition != nil {
		x.Condition = e.Condition.String()
	}
	for _, s := range e.Stages {
		x.Stages = append(x.Stages, Stage{Groups: slices.Clone(s.Groups), Min: s.Min})
	}
	return x, nil
}
