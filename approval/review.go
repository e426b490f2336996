package approval

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ApplyReview records rev on r under entitlement e at now and reports
// whether r changed state (to approved or denied). It enforces separation of
// duties:
//
//   - nobody reviews their own request: a reviewer who is the requester or
//     the beneficiary gets ErrSelfApproval;
//   - nobody counts twice: a second review by the same person gets
//     ErrAlreadyReviewed;
//   - an approval counts toward exactly one stage, the first stage not yet
//     satisfied whose groups include one of rev.Groups, so one person can
//     never satisfy two stages; if there is none, ErrNotApprover names the
//     groups still needed;
//   - a denial needs a reviewer in some group of some stage (ErrNotApprover)
//     and denies the request at once.
//
// The review is recorded with At set to now and Stage set to the stage it
// counted toward (-1 for a denial). When every stage has Min approvals the
// request is approved: the window starts now and ends r.Duration later.
//
// It returns ErrResolved, leaving r unchanged, if r is not pending or its
// pending deadline has passed (use Expire to record that); ErrInvalid for an
// empty reviewer, an unknown decision or a comment that is too long or not
// printable; ErrUnknownEntitlement if e is nil (the entitlement left the
// policy); and ErrUnsupported if e no longer needs approvers. On any error r
// is unchanged.
func ApplyReview(r *Request, e *Entitlement, rev Review, now time.Time) (changed bool, err error) {
	if r == nil {
		return false, fmt.Errorf("review: no request: %w", ErrInvalid)
	}
	if rev.Reviewer == "" {
		return false, fmt.Errorf("review request %s: no reviewer: %w", r.ID, ErrInvalid)
	}
	if rev.Decision != DecisionApprove && rev.Decision != DecisionDeny {
		return false, fmt.Errorf("review request %s: decision %q is neither approve nor deny: %w", r.ID, rev.Decision, ErrInvalid)
	}
	if err := checkText("comment", rev.Comment, DefaultMaxReasonLen); err != nil {
		return false, fmt.Errorf("review request %s: %w", r.ID, err)
	}
	if err := checkLive(r, now); err != nil {
		return false, fmt.Errorf("review request %s: %w", r.ID, err)
	}
	if e == nil {
		return false, fmt.Errorf("review request %s: entitlement %q is not in the policy: %w", r.ID, r.Entitlement, ErrUnknownEntitlement)
	}
	if r.Entitlement != e.Name {
		return false, fmt.Errorf("review request %s for %q under entitlement %q: %w", r.ID, r.Entitlement, e.Name, ErrInvalid)
	}
	if e.Mode != ModeApprovers {
		return false, fmt.Errorf("review request %s: entitlement %q now has approval mode %q: %w", r.ID, e.Name, e.Mode, ErrUnsupported)
	}
	if rev.Reviewer == r.Requester || rev.Reviewer == r.Beneficiary {
		return false, fmt.Errorf("review request %s by %s: %w", r.ID, rev.Reviewer, ErrSelfApproval)
	}
	for _, prev := range r.Reviews {
		if prev.Reviewer == rev.Reviewer {
			return false, fmt.Errorf("review request %s by %s (%s at %s): %w", r.ID, rev.Reviewer, prev.Decision, prev.At.Format(time.RFC3339), ErrAlreadyReviewed)
		}
	}

	rev.At = now
	rev.Groups = slices.Clone(rev.Groups)
	if rev.Decision == DecisionDeny {
		if !slices.ContainsFunc(e.Stages, func(s Stage) bool { return intersects(s.Groups, rev.Groups) }) {
			return false, fmt.Errorf("deny request %s: %s is in none of the approver groups %s: %w", r.ID, rev.Reviewer, strings.Join(allGroups(e.Stages), ", "), ErrNotApprover)
		}
		rev.Stage = -1
		r.Reviews = append(slices.Clip(r.Reviews), rev)
		r.State = StateDenied
		r.ResolvedAt = now
		r.ResolvedBy = rev.Reviewer
		r.ResolutionNote = rev.Comment
		return true, nil
	}

	have := approvals(r, len(e.Stages))
	stage := -1
	for i, s := range e.Stages {
		if have[i] < s.Min && intersects(s.Groups, rev.Groups) {
			stage = i
			break
		}
	}
	if needed := neededGroups(e.Stages, have); stage < 0 && len(needed) > 0 {
		return false, fmt.Errorf("approve request %s: %s is in none of the groups still needed (%s): %w", r.ID, rev.Reviewer, strings.Join(needed, "; "), ErrNotApprover)
	}
	if stage < 0 {
		// Every stage is already satisfied because the policy was relaxed
		// while the request waited: any approver completes it.
		stage = slices.IndexFunc(e.Stages, func(s Stage) bool { return intersects(s.Groups, rev.Groups) })
		if stage < 0 {
			return false, fmt.Errorf("approve request %s: %s is in none of the approver groups %s: %w", r.ID, rev.Reviewer, strings.Join(allGroups(e.Stages), ", "), ErrNotApprover)
		}
	}
	rev.Stage = stage
	r.Reviews = append(slices.Clip(r.Reviews), rev)
	have[stage]++
	for i, s := range e.Stages {
		if have[i] < s.Min {
			return false, nil
		}
	}
	r.State = StateApproved
	r.ApprovedAt = now
	r.WindowEnd = now.Add(r.Duration)
	r.ResolvedAt = now
	return true, nil
}

// StageStatus is what one approval stage has and still needs.
type StageStatus struct {
	// Index is the stage's position in the entitlement's Stages.
	Index int
	// Groups whose members may approve this stage.
	Groups []string
	// Min is how many distinct approvers the stage needs.
	Min int
	// Have is how many approvals counted toward it so far.
	Have int
	// Approvers are the people whose approvals counted, in order.
	Approvers []Principal
}

// Satisfied reports whether the stage has all the approvals it needs.
func (s StageStatus) Satisfied() bool { return s.Have >= s.Min }

// Needs reports, stage by stage, the approvals r has under e and how many
// each stage needs, for showing a request to reviewers.
func Needs(r Request, e *Entitlement) []StageStatus {
	if e == nil {
		return nil
	}
	out := make([]StageStatus, len(e.Stages))
	for i, s := range e.Stages {
		out[i] = StageStatus{Index: i, Groups: slices.Clone(s.Groups), Min: s.Min}
	}
	for _, rev := range r.Reviews {
		if rev.Decision == DecisionApprove && rev.Stage >= 0 && rev.Stage < len(out) {
			out[rev.Stage].Have++
			out[rev.Stage].Approvers = append(out[rev.Stage].Approvers, rev.Reviewer)
		}
	}
	return out
}

// checkLive returns ErrResolved unless r is pending and before its pending
// deadline.
func checkLive(r *Request, now time.Time) error {
	if r.State != StatePending {
		return fmt.Errorf("request is %s: %w", r.State, ErrResolved)
	}
	if !now.Before(r.PendingUntil) {
		return fmt.Errorf("request expired unreviewed at %s: %w", r.PendingUntil.Format(time.RFC3339), ErrResolved)
	}
	return nil
}

// approvals counts the approvals recorded toward each of n stages. Reviews
// naming a stage that no longer exists (the policy changed) count for none.
func approvals(r *Request, n int) []int {
	have := make([]int, n)
	for _, rev := range r.Reviews {
		if rev.Decision == DecisionApprove && rev.Stage >= 0 && rev.Stage < n {
			have[rev.Stage]++
		}
	}
	return have
}

// neededGroups describes the stages still short of approvals, one entry per
// stage: "dba (1 more)".
func neededGroups(stages []Stage, have []int) []string {
	var out []string
	for i, s := range stages {
		if have[i] < s.Min {
			out = append(out, fmt.Sprintf("%s (%d more)", strings.Join(s.Groups, " or "), s.Min-have[i]))
		}
	}
	return out
}

// allGroups lists every group of every stage once, in policy order.
func allGroups(stages []Stage) []string {
	var out []string
	for _, s := range stages {
		for _, g := range s.Groups {
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	return out
}

// intersects reports whether a and b share an element.
func intersects(a, b []string) bool {
	return slices.ContainsFunc(a, func(g string) bool { return slices.Contains(b, g) })
}
