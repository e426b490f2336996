package approval

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultPendingTTL is how long a request waits for reviews when the
// entitlement sets no pending_ttl.
const DefaultPendingTTL = 24 * time.Hour

// RequestInput is what a requester asks for.
type RequestInput struct {
	// ID is the new request's ID; Service.Submit fills it in when empty.
	ID string
	// Requester is the authenticated caller: a workload or a person.
	Requester Principal
	// Beneficiary is the workload the credentials are for; empty means the
	// requester itself.
	Beneficiary Principal
	// Entitlement is the entitlement's name.
	Entitlement string
	// Duration is the approval window asked for; it starts at approval.
	Duration time.Duration
	// Reason is the requester's justification.
	Reason string
	// Ticket is an optional change or incident reference.
	Ticket string
}

// NewRequest checks in against entitlement e at now and returns the pending
// request.
//
// It returns ErrInvalid if e is approved automatically (ask for a credential
// directly), if the reason or ticket breaks the entitlement's rules (the
// message names the rule) or is not printable UTF-8, or if the duration is
// not positive; ErrUnsupported for a mode that is neither auto nor
// approvers; ErrNotEligible if the beneficiary is not a workload covered by a
// requester rule; and ErrTTLTooLong, naming the window, if the duration is
// longer than the entitlement's window. Durations are refused, never capped.
func NewRequest(in RequestInput, e *Entitlement, now time.Time) (Request, error) {
	if e == nil {
		return Request{}, fmt.Errorf("new request for %q: %w", in.Entitlement, ErrUnknownEntitlement)
	}
	if in.Entitlement != "" && in.Entitlement != e.Name {
		return Request{}, fmt.Errorf("new request for %q checked against entitlement %q: %w", in.Entitlement, e.Name, ErrInvalid)
	}
	switch e.Mode {
	case ModeApprovers:
	case ModeAuto:
		return Request{}, fmt.Errorf("entitlement %q is approved automatically; ask for a credential directly: %w", e.Name, ErrInvalid)
	default:
		return Request{}, fmt.Errorf("entitlement %q has approval mode %q: %w", e.Name, e.Mode, ErrUnsupported)
	}
	if len(e.Stages) == 0 {
		// A misconfigured entitlement could never be approved; say so now.
		return Request{}, fmt.Errorf("entitlement %q needs approvers but defines no approval stages", e.Name)
	}
	if in.ID == "" {
		return Request{}, fmt.Errorf("new request for %q: empty request id: %w", e.Name, ErrInvalid)
	}
	if in.Requester == "" {
		return Request{}, fmt.Errorf("new request for %q: no requester: %w", e.Name, ErrInvalid)
	}
	beneficiary := in.Beneficiary
	if beneficiary == "" {
		beneficiary = in.Requester
	}
	if !beneficiary.IsWorkload() {
		return Request{}, fmt.Errorf("new request for %q: beneficiary %s is not a workload: %w", e.Name, beneficiary, ErrNotEligible)
	}
	rule, ok := e.Eligible(beneficiary)
	if !ok {
		return Request{}, fmt.Errorf("%s may not request %q: %w", beneficiary, e.Name, ErrNotEligible)
	}
	switch {
	case in.Duration <= 0:
		return Request{}, fmt.Errorf("duration %s for %q must be positive: %w", in.Duration, e.Name, ErrInvalid)
	case in.Duration > e.Window:
		return Request{}, fmt.Errorf("duration %s for %q is above its approval window %s: %w", in.Duration, e.Name, e.Window, ErrTTLTooLong)
	}
	if err := checkReason(in.Reason, e); err != nil {
		return Request{}, err
	}
	if err := checkTicket(in.Ticket, e); err != nil {
		return Request{}, err
	}
	pendingTTL := e.PendingTTL
	if pendingTTL <= 0 {
		pendingTTL = DefaultPendingTTL
	}
	return Request{
		ID:           in.ID,
		Requester:    in.Requester,
		Beneficiary:  beneficiary,
		Entitlement:  e.Name,
		Duration:     in.Duration,
		Reason:       in.Reason,
		Ticket:       in.Ticket,
		Rule:         rule,
		State:        StatePending,
		CreatedAt:    now,
		PendingUntil: now.Add(pendingTTL),
	}, nil
}

// checkReason applies e's reason rule.
func checkReason(reason string, e *Entitlement) error {
	maxLen := e.Reason.MaxLen
	if maxLen <= 0 {
		maxLen = DefaultMaxReasonLen
	}
	if err := checkText("reason", reason, maxLen); err != nil {
		return fmt.Errorf("request for %q: %w", e.Name, err)
	}
	if e.Reason.Required && strings.TrimSpace(reason) == "" {
		return fmt.Errorf("request for %q: a reason is required: %w", e.Name, ErrInvalid)
	}
	if e.Reason.Pattern != "" && reason != "" {
		ok, err := matchWhole(e.Reason.Pattern, reason)
		if err != nil {
			return fmt.Errorf("entitlement %q: reason pattern: %v", e.Name, err)
		}
		if !ok {
			return fmt.Errorf("request for %q: reason does not match the required pattern %q: %w", e.Name, e.Reason.Pattern, ErrInvalid)
		}
	}
	return nil
}

// checkTicket applies e's ticket pattern; an empty ticket is always allowed
// unless a pattern is set.
func checkTicket(ticket string, e *Entitlement) error {
	if err := checkText("ticket", ticket, DefaultMaxReasonLen); err != nil {
		return fmt.Errorf("request for %q: %w", e.Name, err)
	}
	if e.TicketPattern == "" {
		return nil
	}
	ok, err := matchWhole(e.TicketPattern, ticket)
	if err != nil {
		return fmt.Errorf("entitlement %q: ticket pattern: %v", e.Name, err)
	}
	if !ok {
		return fmt.Errorf("request for %q: ticket %q does not match the required pattern %q: %w", e.Name, ticket, e.TicketPattern, ErrInvalid)
	}
	return nil
}

// checkText bounds free text written by people: at most maxLen bytes of
// valid UTF-8 with no control characters other than newline and tab
// (reliability case T37: bounded input).
func checkText(field, s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("%s is %d bytes long; the limit is %d: %w", field, len(s), maxLen, ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8: %w", field, ErrInvalid)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return fmt.Errorf("%s contains control character %U: %w", field, r, ErrInvalid)
		}
	}
	return nil
}

// matchWhole reports whether pattern (RE2 syntax) matches all of s, not just
// part of it. An invalid pattern is an error, so a broken policy denies.
func matchWhole(pattern, s string) (bool, error) {
	if _, err := regexp.Compile(pattern); err != nil {
		return false, err
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return false, err
	}
	return re.MatchString(s), nil
}
