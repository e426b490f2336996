package approval

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ApplyBreakGlassReview records rev on the break-glass use bg under rule
// (the entitlement's break-glass rule in force) at now and reports whether
// the review closed. It enforces separation of duties (reliability case
// T36: break-glass is never reviewed by its own taker):
//
//   - a reviewer who is the taker or the beneficiary gets ErrSelfApproval;
//   - a second review by the same person gets ErrAlreadyReviewed;
//   - a reviewer in none of rule.ReviewerGroups gets ErrNotApprover.
//
// An unjustified review closes the use at once with Outcome unjustified; a
// justified one closes it, with Outcome justified, once rule.MinReviewers
// distinct people (at least one) have found it justified. The review is
// recorded with At set to now. A review after the due time is accepted:
// an overdue review is still to be done.
//
// It returns ErrResolved if bg is already closed; ErrInvalid for an empty
// reviewer, an outcome that is neither justified nor unjustified, or notes
// that are too long (1024 bytes) or not printable; and
// ErrBreakGlassNotAllowed if rule is nil (the entitlement left the policy
// or lost its break_glass block, so nobody is known to be a reviewer). On
// any error bg is unchanged.
func ApplyBreakGlassReview(bg *BreakGlass, rule *BreakGlassRule, rev BreakGlassReview, now time.Time) (changed bool, err error) {
	if bg == nil {
		return false, fmt.Errorf("review break-glass: no break-glass use: %w", ErrInvalid)
	}
	if rev.Reviewer == "" {
		return false, fmt.Errorf("review break-glass %s: no reviewer: %w", bg.ID, ErrInvalid)
	}
	if rev.Outcome != OutcomeJustified && rev.Outcome != OutcomeUnjustified {
		return false, fmt.Errorf("review break-glass %s: outcome %q is neither %s nor %s: %w", bg.ID, rev.Outcome, OutcomeJustified, OutcomeUnjustified, ErrInvalid)
	}
	if err := checkText("notes", rev.Notes, DefaultMaxReasonLen); err != nil {
		return false, fmt.Errorf("review break-glass %s: %w", bg.ID, err)
	}
	if bg.State != BreakGlassOpen {
		return false, fmt.Errorf("review break-glass %s: review is %s (%s): %w", bg.ID, bg.State, bg.Outcome, ErrResolved)
	}
	if rule == nil {
		return false, fmt.Errorf("review break-glass %s: entitlement %q does not allow break-glass any more, so it has no reviewers; restore its break_glass block to review: %w", bg.ID, bg.Entitlement, ErrBreakGlassNotAllowed)
	}
	if rev.Reviewer == bg.Taker || rev.Reviewer == bg.Beneficiary {
		return false, fmt.Errorf("review break-glass %s by %s: the taker and the beneficiary may not review it: %w", bg.ID, rev.Reviewer, ErrSelfApproval)
	}
	for _, prev := range bg.Reviews {
		if prev.Reviewer == rev.Reviewer {
			return false, fmt.Errorf("review break-glass %s by %s (%s at %s): %w", bg.ID, rev.Reviewer, prev.Outcome, prev.At.Format(time.RFC3339), ErrAlreadyReviewed)
		}
	}
	if !intersects(rule.ReviewerGroups, rev.Groups) {
		return false, fmt.Errorf("review break-glass %s: %s is in none of the reviewer groups %s: %w", bg.ID, rev.Reviewer, strings.Join(rule.ReviewerGroups, ", "), ErrNotApprover)
	}

	rev.At = now
	rev.Groups = slices.Clone(rev.Groups)
	bg.Reviews = append(slices.Clip(bg.Reviews), rev)
	if rev.Outcome == OutcomeUnjustified {
		closeBreakGlass(bg, OutcomeUnjustified, now)
		return true, nil
	}
	justified := 0
	for _, r := range bg.Reviews {
		if r.Outcome == OutcomeJustified {
			justified++
		}
	}
	if justified < max(rule.MinReviewers, 1) {
		return false, nil
	}
	closeBreakGlass(bg, OutcomeJustified, now)
	return true, nil
}

// closeBreakGlass records the end of bg's review.
func closeBreakGlass(bg *BreakGlass, outcome ReviewOutcome, now time.Time) {
	bg.State = BreakGlassClosed
	bg.Outcome = outcome
	bg.ClosedAt = now
}
