package approval

import (
	"fmt"
	"time"
)

// Notes recorded when a request expires.
const (
	notePendingExpired = "expired: no decision before the pending deadline"
	noteWindowEnded    = "expired: the approval window ended"
)

// Cancel withdraws a pending request at now on behalf of by, who must be its
// requester.
//
// It returns ErrResolved, leaving r unchanged, if r is not pending or its
// pending deadline has passed; ErrNotRequester if by is not the requester;
// and ErrInvalid for an empty by or a note that is too long or not printable.
func Cancel(r *Request, by Principal, note string, now time.Time) error {
	if r == nil || by == "" {
		return fmt.Errorf("cancel request: no request or canceller: %w", ErrInvalid)
	}
	if err := checkText("note", note, DefaultMaxReasonLen); err != nil {
		return fmt.Errorf("cancel request %s: %w", r.ID, err)
	}
	if err := checkLive(r, now); err != nil {
		return fmt.Errorf("cancel request %s: %w", r.ID, err)
	}
	if by != r.Requester {
		return fmt.Errorf("cancel request %s by %s: %w", r.ID, by, ErrNotRequester)
	}
	r.State = StateCancelled
	r.ResolvedAt = now
	r.ResolvedBy = by
	r.ResolutionNote = note
	return nil
}

// Revoke ends an approval early at now on behalf of by. Whether by may
// revoke is the caller's decision; Revoke records who did. Every credential
// minted under r must then be revoked (Service.Revoke returns them).
//
// It returns ErrResolved, leaving r unchanged, if r is not approved or its
// window has ended; and ErrInvalid for an empty by or a reason that is too
// long or not printable.
func Revoke(r *Request, by Principal, reason string, now time.Time) error {
	if r == nil || by == "" {
		return fmt.Errorf("revoke request: no request or revoker: %w", ErrInvalid)
	}
	if err := checkText("reason", reason, DefaultMaxReasonLen); err != nil {
		return fmt.Errorf("revoke request %s: %w", r.ID, err)
	}
	if r.State != StateApproved {
		return fmt.Errorf("revoke request %s: request is %s, not approved: %w", r.ID, r.State, ErrResolved)
	}
	if !now.Before(r.WindowEnd) {
		return fmt.Errorf("revoke request %s: its window ended at %s: %w", r.ID, r.WindowEnd.Format(time.RFC3339), ErrResolved)
	}
	r.State = StateRevoked
	r.ResolvedAt = now
	r.ResolvedBy = by
	r.ResolutionNote = reason
	return nil
}

// Expire moves r to expired if, at now, it is pending past its pending
// deadline or approved past its window's end, and reports whether it did.
// ResolvedAt is set to the deadline that passed, not to now, so a late sweep
// records when the request really expired.
func Expire(r *Request, now time.Time) (changed bool) {
	if r == nil {
		return false
	}
	var deadline time.Time
	var note string
	switch r.State {
	case StatePending:
		deadline, note = r.PendingUntil, notePendingExpired
	case StateApproved:
		deadline, note = r.WindowEnd, noteWindowEnded
	default:
		return false
	}
	if now.Before(deadline) {
		return false
	}
	r.State = StateExpired
	r.ResolvedAt = deadline
	r.ResolvedBy = ""
	r.ResolutionNote = note
	return true
}
