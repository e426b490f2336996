package approval

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The people and workloads of the approval tests.
const (
	workload = Principal("spiffe://td/ns/prod/api")
	rita     = Principal("oidc:https://idp#rita") // requests on the workload's behalf
	alice    = Principal("oidc:https://idp#alice")
	bob      = Principal("oidc:https://idp#bob")
	carol    = Principal("oidc:https://idp#carol")
	dave     = Principal("oidc:https://idp#dave")
)

// approverEntitlement is entitlement "db" needing the given stages, with an
// 8h window, a 15m max_ttl and a 24h pending deadline.
func approverEntitlement(stages ...Stage) *Entitlement {
	r, err := ParseRequester("spiffe://td/ns/prod/*", "td")
	if err != nil {
		panic(err)
	}
	return &Entitlement{
		Name: "db", Owner: "dba-team", MaxTTL: 15 * time.Minute, Requesters: []Requester{r},
		Recipe: Recipe{Kind: KindJWT, Audience: []string{"db"}},
		Mode:   ModeApprovers, Stages: stages, Window: 8 * time.Hour, PendingTTL: 24 * time.Hour,
	}
}

// pendingRequest is rita's request for workload under e, made at now for 2h.
func pendingRequest(t *testing.T, e *Entitlement) Request {
	t.Helper()
	r, err := NewRequest(RequestInput{ID: "r1", Requester: rita, Beneficiary: workload, Entitlement: e.Name, Duration: 2 * time.Hour, Reason: "deploy the schema migration"}, e, now)
	if err != nil {
		t.Fatalf("NewRequest() err = %v", err)
	}
	return r
}

func approve(who Principal, groups ...string) Review {
	return Review{Reviewer: who, Groups: groups, Decision: DecisionApprove, Comment: "ok"}
}

func deny(who Principal, groups ...string) Review {
	return Review{Reviewer: who, Groups: groups, Decision: DecisionDeny, Comment: "not now"}
}

var (
	oneDBA      = []Stage{{Groups: []string{"dba"}, Min: 1}}
	twoDBAs     = []Stage{{Groups: []string{"dba"}, Min: 2}}
	dbaThenSec  = []Stage{{Groups: []string{"dba"}, Min: 1}, {Groups: []string{"security"}, Min: 1}}
	dbaThenAny  = []Stage{{Groups: []string{"dba"}, Min: 1}, {Groups: []string{"dba", "sre"}, Min: 1}}
	twoDBAsThen = []Stage{{Groups: []string{"dba"}, Min: 2}, {Groups: []string{"security", "sre"}, Min: 1}}
)

func TestApplyReview(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		stages []Stage
		before []Review // applied first; each must succeed
		// stagesAfter, if set, replaces the stages before rev (a policy reload).
		stagesAfter []Stage
		mode        Mode // replaces the mode before rev, if set
		noEnt       bool // the entitlement left the policy before rev
		rev         Review
		at          time.Duration // after now
		wantErr     error
		wantMsg     string
		wantChanged bool
		wantState   State
		wantStage   int // of the appended review
	}{
		{name: "one approval satisfies a 1-of-N stage", stages: oneDBA,
			rev: approve(alice, "dba"), wantChanged: true, wantState: StateApproved},
		{name: "first of two approvals leaves the request pending", stages: twoDBAs,
			rev: approve(alice, "dba"), wantState: StatePending},
		{name: "second distinct approver satisfies a 2-of-N stage", stages: twoDBAs, before: []Review{approve(alice, "dba")},
			rev: approve(bob, "dba"), wantChanged: true, wantState: StateApproved},
		// T20: the same reviewer twice toward a 2-of-N threshold.
		{name: "same reviewer twice toward a 2-of-N threshold is rejected", stages: twoDBAs, before: []Review{approve(alice, "dba")},
			rev: approve(alice, "dba"), wantErr: ErrAlreadyReviewed},
		{name: "a reviewer who approved cannot also deny", stages: twoDBAs, before: []Review{approve(alice, "dba")},
			rev: deny(alice, "dba"), wantErr: ErrAlreadyReviewed},
		// T19: the requester approves their own request.
		{name: "requester cannot approve own request", stages: oneDBA,
			rev: approve(rita, "dba"), wantErr: ErrSelfApproval},
		{name: "requester cannot deny own request", stages: oneDBA,
			rev: deny(rita, "dba"), wantErr: ErrSelfApproval},
		{name: "beneficiary cannot approve its own request", stages: oneDBA,
			rev: approve(workload, "dba"), wantErr: ErrSelfApproval},
		{name: "approver in no group is not an approver", stages: oneDBA,
			rev: approve(alice, "sre"), wantErr: ErrNotApprover, wantMsg: "dba (1 more)"},
		{name: "approver without groups is not an approver", stages: oneDBA,
			rev: approve(alice), wantErr: ErrNotApprover},
		{name: "one person cannot satisfy two stages", stages: dbaThenSec,
			rev: approve(alice, "dba", "security"), wantState: StatePending, wantStage: 0},
		{name: "second stage needs a second person", stages: dbaThenSec, before: []Review{approve(alice, "dba", "security")},
			rev: approve(bob, "security"), wantChanged: true, wantState: StateApproved, wantStage: 1},
		{name: "approval counts toward the first unsatisfied stage it matches", stages: dbaThenAny, before: []Review{approve(alice, "dba")},
			rev: approve(bob, "dba"), wantChanged: true, wantState: StateApproved, wantStage: 1},
		{name: "member of a satisfied stage only is told what is still needed", stages: twoDBAsThen,
			before: []Review{approve(alice, "dba"), approve(bob, "dba")},
			rev:    approve(carol, "dba"), wantErr: ErrNotApprover, wantMsg: "security or sre (1 more)"},
		{name: "both stages of a 2+1 policy", stages: twoDBAsThen,
			before: []Review{approve(alice, "dba"), approve(bob, "dba", "sre")},
			rev:    approve(carol, "sre"), wantChanged: true, wantState: StateApproved, wantStage: 1},
		{name: "a deny by a member of any stage denies at once", stages: twoDBAsThen, before: []Review{approve(alice, "dba")},
			rev: deny(carol, "sre"), wantChanged: true, wantState: StateDenied, wantStage: -1},
		{name: "a deny by an outsider is refused", stages: oneDBA,
			rev: deny(carol, "marketing"), wantErr: ErrNotApprover},
		// T17: two reviewers approve a 1-of-N request; the second is too late.
		{name: "review of an approved request is already resolved", stages: oneDBA, before: []Review{approve(alice, "dba")},
			rev: approve(bob, "dba"), wantErr: ErrResolved},
		// T18: once denied, an approval cannot flip the state.
		{name: "review of a denied request is already resolved", stages: oneDBA, before: []Review{deny(alice, "dba")},
			rev: approve(bob, "dba"), wantErr: ErrResolved},
		{name: "review after the pending deadline is refused", stages: oneDBA,
			rev: approve(alice, "dba"), at: 25 * time.Hour, wantErr: ErrResolved},
		{name: "review exactly at the pending deadline is refused", stages: oneDBA,
			rev: approve(alice, "dba"), at: 24 * time.Hour, wantErr: ErrResolved},
		{name: "review just before the pending deadline counts", stages: oneDBA,
			rev: approve(alice, "dba"), at: 24*time.Hour - time.Millisecond, wantChanged: true, wantState: StateApproved},
		{name: "comment over the limit", stages: oneDBA,
			rev: Review{Reviewer: alice, Groups: []string{"dba"}, Decision: DecisionApprove, Comment: strings.Repeat("x", DefaultMaxReasonLen+1)}, wantErr: ErrInvalid, wantMsg: "1024"},
		{name: "comment with a control character", stages: oneDBA,
			rev: Review{Reviewer: alice, Groups: []string{"dba"}, Decision: DecisionApprove, Comment: "ok\x1b[2J"}, wantErr: ErrInvalid},
		{name: "unknown decision", stages: oneDBA,
			rev: Review{Reviewer: alice, Groups: []string{"dba"}, Decision: "maybe"}, wantErr: ErrInvalid},
		{name: "no reviewer", stages: oneDBA,
			rev: Review{Groups: []string{"dba"}, Decision: DecisionApprove}, wantErr: ErrInvalid},
		{name: "entitlement removed from the policy", stages: oneDBA, noEnt: true,
			rev: approve(alice, "dba"), wantErr: ErrUnknownEntitlement},
		{name: "entitlement switched to auto", stages: oneDBA, mode: ModeAuto,
			rev: approve(alice, "dba"), wantErr: ErrUnsupported},
		{name: "stricter policy after a reload needs more approvals", stages: oneDBA, stagesAfter: twoDBAs,
			rev: approve(alice, "dba"), wantState: StatePending},
		{name: "relaxed policy after a reload lets the next approver finish", stages: twoDBAs, before: []Review{approve(alice, "dba")},
			stagesAfter: dbaThenSec[:1], rev: approve(bob, "dba"), wantChanged: true, wantState: StateApproved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := approverEntitlement(tt.stages...)
			r := pendingRequest(t, e)
			for i, b := range tt.before {
				if _, err := ApplyReview(&r, e, b, now.Add(time.Duration(i+1)*time.Minute)); err != nil {
					t.Fatalf("ApplyReview(before[%d]) err = %v", i, err)
				}
			}
			if tt.stagesAfter != nil {
				e.Stages = tt.stagesAfter
			}
			if tt.mode != "" {
				e.Mode = tt.mode
			}
			if tt.noEnt {
				e = nil
			}
			orig := cloneRequest(r)
			at := now.Add(tt.at)
			if tt.at == 0 {
				at = now.Add(time.Hour)
			}
			changed, err := ApplyReview(&r, e, tt.rev, at)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("ApplyReview() err = %v, want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
				}
				if changed {
					t.Errorf("ApplyReview() changed = true on error")
				}
				if diff := cmp.Diff(orig, r); diff != "" {
					t.Errorf("ApplyReview() changed the request on error (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("ApplyReview() err = %v", err)
			}
			if changed != tt.wantChanged || r.State != tt.wantState {
				t.Errorf("ApplyReview() changed = %v, state %s; want %v, %s", changed, r.State, tt.wantChanged, tt.wantState)
			}
			last := r.Reviews[len(r.Reviews)-1]
			if last.Reviewer != tt.rev.Reviewer || last.Stage != tt.wantStage || !last.At.Equal(at) {
				t.Errorf("last review = %+v, want by %s toward stage %d at %v", last, tt.rev.Reviewer, tt.wantStage, at)
			}
			switch r.State {
			case StateApproved:
				if !r.ApprovedAt.Equal(at) || !r.WindowEnd.Equal(at.Add(r.Duration)) || !r.ResolvedAt.Equal(at) {
					t.Errorf("approved at %v, window end %v, resolved %v; want the window to start at %v and last %v", r.ApprovedAt, r.WindowEnd, r.ResolvedAt, at, r.Duration)
				}
			case StateDenied:
				if !r.ResolvedAt.Equal(at) || r.ResolvedBy != tt.rev.Reviewer || r.ResolutionNote != tt.rev.Comment || !r.WindowEnd.IsZero() {
					t.Errorf("denied request = %+v, want resolved by %s at %v with its comment", r, tt.rev.Reviewer, at)
				}
			case StatePending:
				if !r.ResolvedAt.IsZero() || !r.WindowEnd.IsZero() {
					t.Errorf("pending request has resolution fields set: %+v", r)
				}
			}
		})
	}
}

// cloneRequest copies r deeply enough to detect mutation.
func cloneRequest(r Request) Request {
	r.Reviews = append([]Review(nil), r.Reviews...)
	return r
}

// TestApplyReview_DoesNotAliasReviews checks that appending a review never
// writes into a backing array shared with another copy of the request.
func TestApplyReview_DoesNotAliasReviews(t *testing.T) {
	t.Parallel()
	e := approverEntitlement(twoDBAs...)
	r := pendingRequest(t, e)
	r.Reviews = make([]Review, 0, 4)
	copyA, copyB := r, r
	if _, err := ApplyReview(&copyA, e, approve(alice, "dba"), now); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyReview(&copyB, e, approve(bob, "dba"), now); err != nil {
		t.Fatal(err)
	}
	if copyA.Reviews[0].Reviewer != alice || copyB.Reviews[0].Reviewer != bob {
		t.Errorf("copies share reviews: %v / %v", copyA.Reviews, copyB.Reviews)
	}
}

func TestNeeds(t *testing.T) {
	t.Parallel()
	e := approverEntitlement(twoDBAsThen...)
	r := pendingRequest(t, e)
	for _, rev := range []Review{approve(alice, "dba"), approve(bob, "sre")} {
		if _, err := ApplyReview(&r, e, rev, now); err != nil {
			t.Fatal(err)
		}
	}
	want := []StageStatus{
		{Index: 0, Groups: []string{"dba"}, Min: 2, Have: 1, Approvers: []Principal{alice}},
		{Index: 1, Groups: []string{"security", "sre"}, Min: 1, Have: 1, Approvers: []Principal{bob}},
	}
	got := Needs(r, e)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Needs() mismatch (-want +got):\n%s", diff)
	}
	if got[0].Satisfied() || !got[1].Satisfied() {
		t.Errorf("Satisfied() = %v, %v; want false, true", got[0].Satisfied(), got[1].Satisfied())
	}
	if got := Needs(r, nil); got != nil {
		t.Errorf("Needs(nil entitlement) = %v, want nil", got)
	}
}
