package approval

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Break-glass principals: the on-call workload and people of the tests.
const (
	oncall = Principal("spiffe://td/ns/oncall/pager") // allowed to break glass, not a requester
	sam    = Principal("oidc:https://idp#sam")        // in sre: may break glass
)

// breakGlassRule allows workloads under /ns/prod/ and /ns/oncall/ and
// group sre to break glass for 5m, reviewed within 24h by two people from
// security.
func breakGlassRule() *BreakGlassRule {
	var ws []Requester
	for _, p := range []string{"spiffe://td/ns/prod/*", "spiffe://td/ns/oncall/*"} {
		w, err := ParseRequester(p, "td")
		if err != nil {
			panic(err)
		}
		ws = append(ws, w)
	}
	return &BreakGlassRule{
		Workloads: ws, Groups: []string{"sre"},
		MaxTTL: 5 * time.Minute, ReviewWithin: 24 * time.Hour,
		ReviewerGroups: []string{"security"}, MinReviewers: 2, BlockWhileOverdue: true,
	}
}

// breakGlassPolicy holds "db" (approvers, see approverEntitlement) with
// breakGlassRule, and "auto" without break-glass.
func breakGlassPolicy() *Policy {
	p := approverPolicy(oneDBA...)
	p.Entitlements["db"].BreakGlass = breakGlassRule()
	auto := testPolicy(ModeAuto, nil).Entitlements["db"]
	auto.Name = "auto"
	p.Entitlements["auto"] = auto
	return p
}

func TestPolicy_DecideBreakGlass(t *testing.T) {
	t.Parallel()
	valid := BreakGlassInput{ID: "bg_1", Taker: workload, Entitlement: "db", Reason: "orders are failing", Incident: "INC-7"}
	tests := []struct {
		name            string
		change          func(*BreakGlassInput)
		wantErr         error
		wantMsg         string
		wantTTL         time.Duration
		wantBeneficiary Principal
	}{
		{name: "allowed workload takes it for itself", wantTTL: 5 * time.Minute, wantBeneficiary: workload},
		{name: "allowed person by group takes it for themselves",
			change:  func(in *BreakGlassInput) { in.Taker, in.TakerGroups = sam, []string{"dev", "sre"} },
			wantTTL: 5 * time.Minute, wantBeneficiary: sam},
		{name: "allowed person takes it for an eligible workload",
			change:  func(in *BreakGlassInput) { in.Taker, in.TakerGroups, in.Beneficiary = sam, []string{"sre"}, workload },
			wantTTL: 5 * time.Minute, wantBeneficiary: workload},
		{name: "workload naming itself as beneficiary", change: func(in *BreakGlassInput) { in.Beneficiary = workload },
			wantTTL: 5 * time.Minute, wantBeneficiary: workload},
		{name: "ttl 0 is the break-glass cap", change: func(in *BreakGlassInput) { in.TTL = 0 }, wantTTL: 5 * time.Minute, wantBeneficiary: workload},
		{name: "shorter ttl is kept", change: func(in *BreakGlassInput) { in.TTL = 2 * time.Minute }, wantTTL: 2 * time.Minute, wantBeneficiary: workload},
		{name: "exactly the cap is allowed", change: func(in *BreakGlassInput) { in.TTL = 5 * time.Minute }, wantTTL: 5 * time.Minute, wantBeneficiary: workload},
		{name: "reason with newline and tab", change: func(in *BreakGlassInput) { in.Reason = "db down\n\tfailover" }, wantTTL: 5 * time.Minute, wantBeneficiary: workload},

		{name: "ttl above the cap is refused, naming it", change: func(in *BreakGlassInput) { in.TTL = 5*time.Minute + time.Second },
			wantErr: ErrTTLTooLong, wantMsg: "break-glass max_ttl 5m0s"},
		{name: "ttl within max_ttl but above the break-glass cap", change: func(in *BreakGlassInput) { in.TTL = 10 * time.Minute },
			wantErr: ErrTTLTooLong, wantMsg: "break-glass max_ttl 5m0s"},
		{name: "negative ttl", change: func(in *BreakGlassInput) { in.TTL = -time.Second }, wantErr: ErrInvalid},
		{name: "entitlement without break-glass", change: func(in *BreakGlassInput) { in.Entitlement = "auto" },
			wantErr: ErrBreakGlassNotAllowed, wantMsg: `entitlement "auto" does not allow break-glass`},
		{name: "unknown entitlement", change: func(in *BreakGlassInput) { in.Entitlement = "nope" }, wantErr: ErrUnknownEntitlement},
		{name: "workload not allowed", change: func(in *BreakGlassInput) { in.Taker = "spiffe://td/ns/dev/api" }, wantErr: ErrNotEligible},
		{name: "workload allowed to break glass but not a requester", change: func(in *BreakGlassInput) { in.Taker = oncall },
			wantErr: ErrNotEligible, wantMsg: "not a requester"},
		{name: "person in none of the groups", change: func(in *BreakGlassInput) { in.Taker, in.TakerGroups = sam, []string{"dev"} },
			wantErr: ErrNotEligible, wantMsg: "in none of the groups sre"},
		{name: "person without groups", change: func(in *BreakGlassInput) { in.Taker = sam }, wantErr: ErrNotEligible},
		{name: "groups do not make a workload allowed", change: func(in *BreakGlassInput) {
			in.Taker, in.TakerGroups = "spiffe://td/ns/dev/api", []string{"sre"}
		}, wantErr: ErrNotEligible},
		{name: "person for an ineligible workload", change: func(in *BreakGlassInput) {
			in.Taker, in.TakerGroups, in.Beneficiary = sam, []string{"sre"}, "spiffe://td/ns/dev/api"
		}, wantErr: ErrNotEligible},
		{name: "person for another person", change: func(in *BreakGlassInput) {
			in.Taker, in.TakerGroups, in.Beneficiary = sam, []string{"sre"}, alice
		}, wantErr: ErrInvalid},
		{name: "workload for another workload", change: func(in *BreakGlassInput) { in.Beneficiary = "spiffe://td/ns/prod/other" },
			wantErr: ErrInvalid},
		{name: "empty reason", change: func(in *BreakGlassInput) { in.Reason = "" }, wantErr: ErrInvalid, wantMsg: "reason is required"},
		{name: "blank reason", change: func(in *BreakGlassInput) { in.Reason = " \n\t" }, wantErr: ErrInvalid, wantMsg: "reason is required"},
		{name: "10 KiB reason", change: func(in *BreakGlassInput) { in.Reason = strings.Repeat("x", 10<<10) },
			wantErr: ErrInvalid, wantMsg: "the limit is 1024"},
		{name: "reason with a control character", change: func(in *BreakGlassInput) { in.Reason = "db down\x1b[31m" }, wantErr: ErrInvalid},
		{name: "reason not UTF-8", change: func(in *BreakGlassInput) { in.Reason = "db \xff down" }, wantErr: ErrInvalid},
		{name: "incident over 256 bytes", change: func(in *BreakGlassInput) { in.Incident = strings.Repeat("I", 257) },
			wantErr: ErrInvalid, wantMsg: "the limit is 256"},
		{name: "empty id", change: func(in *BreakGlassInput) { in.ID = "" }, wantErr: ErrInvalid},
		{name: "empty taker", change: func(in *BreakGlassInput) { in.Taker = "" }, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := valid
			if tt.change != nil {
				tt.change(&in)
			}
			bg, g, err := breakGlassPolicy().DecideBreakGlass(context.Background(), "g1", in, now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("DecideBreakGlass() err = %v, want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecideBreakGlass() err = %v", err)
			}
			wantBG := BreakGlass{
				ID: "bg_1", Taker: in.Taker, Beneficiary: tt.wantBeneficiary, Entitlement: "db",
				Reason: in.Reason, Incident: "INC-7", TakenAt: now, ReviewDue: now.Add(24 * time.Hour), State: BreakGlassOpen,
			}
			if diff := cmp.Diff(wantBG, bg); diff != "" {
				t.Errorf("DecideBreakGlass() break-glass mismatch (-want +got):\n%s", diff)
			}
			wantG := Grant{
				ID: "g1", Principal: tt.wantBeneficiary, Entitlement: "db", Recipe: Recipe{Kind: KindJWT, Audience: []string{"db"}},
				Rule: "entitlements.db.break_glass", TTL: tt.wantTTL, IssuedAt: now, Expires: now.Add(tt.wantTTL), BreakGlass: true,
				NotAfter: now.Add(5 * time.Minute), // the break-glass cap, renewals included
			}
			if diff := cmp.Diff(wantG, g); diff != "" {
				t.Errorf("DecideBreakGlass() grant mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// openBreakGlass is sam's use of "db" for workload, taken at now.
func openBreakGlass() BreakGlass {
	return BreakGlass{ID: "bg_1", Taker: sam, Beneficiary: workload, Entitlement: "db", Reason: "db down",
		TakenAt: now, ReviewDue: now.Add(24 * time.Hour), State: BreakGlassOpen}
}

func justified(who Principal, groups ...string) BreakGlassReview {
	return BreakGlassReview{Reviewer: who, Groups: groups, Outcome: OutcomeJustified, Notes: "incident confirmed"}
}

func unjustified(who Principal, groups ...string) BreakGlassReview {
	return BreakGlassReview{Reviewer: who, Groups: groups, Outcome: OutcomeUnjustified, Notes: "no incident"}
}

// bgStep is one review in a TestApplyBreakGlassReview scenario.
type bgStep struct {
	rev         BreakGlassReview
	wantErr     error
	wantChanged bool
	wantState   BreakGlassState
	wantOutcome ReviewOutcome
}

func TestApplyBreakGlassReview(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		min   int
		noBG  bool // the entitlement lost its break-glass rule
		steps []bgStep
	}{
		// T36: break-glass cannot be self-reviewed.
		{name: "taker cannot review their own break-glass", min: 1, steps: []bgStep{
			{rev: justified(sam, "security"), wantErr: ErrSelfApproval, wantState: BreakGlassOpen},
		}},
		{name: "beneficiary cannot review it", min: 1, steps: []bgStep{
			{rev: justified(workload, "security"), wantErr: ErrSelfApproval, wantState: BreakGlassOpen},
		}},
		{name: "outsider is not a reviewer", min: 1, steps: []bgStep{
			{rev: justified(bob, "sre", "dba"), wantErr: ErrNotApprover, wantState: BreakGlassOpen},
		}},
		{name: "justified by min reviewers closes", min: 2, steps: []bgStep{
			{rev: justified(bob, "security"), wantState: BreakGlassOpen},
			{rev: justified(carol, "security"), wantChanged: true, wantState: BreakGlassClosed, wantOutcome: OutcomeJustified},
		}},
		{name: "one justified review closes a 1-reviewer rule", min: 1, steps: []bgStep{
			{rev: justified(bob, "security"), wantChanged: true, wantState: BreakGlassClosed, wantOutcome: OutcomeJustified},
		}},
		{name: "unjustified closes at once", min: 2, steps: []bgStep{
			{rev: unjustified(bob, "security"), wantChanged: true, wantState: BreakGlassClosed, wantOutcome: OutcomeUnjustified},
		}},
		{name: "unjustified after a justified review closes unjustified", min: 2, steps: []bgStep{
			{rev: justified(bob, "security"), wantState: BreakGlassOpen},
			{rev: unjustified(carol, "security"), wantChanged: true, wantState: BreakGlassClosed, wantOutcome: OutcomeUnjustified},
		}},
		{name: "double review is refused", min: 2, steps: []bgStep{
			{rev: justified(bob, "security"), wantState: BreakGlassOpen},
			{rev: justified(bob, "security"), wantErr: ErrAlreadyReviewed, wantState: BreakGlassOpen},
			{rev: unjustified(bob, "security"), wantErr: ErrAlreadyReviewed, wantState: BreakGlassOpen},
		}},
		{name: "closed review is resolved for good", min: 1, steps: []bgStep{
			{rev: justified(bob, "security"), wantChanged: true, wantState: BreakGlassClosed, wantOutcome: OutcomeJustified},
			{rev: unjustified(carol, "security"), wantErr: ErrResolved, wantState: BreakGlassClosed, wantOutcome: OutcomeJustified},
		}},
		{name: "unknown outcome", min: 1, steps: []bgStep{
			{rev: BreakGlassReview{Reviewer: bob, Groups: []string{"security"}, Outcome: "fine"}, wantErr: ErrInvalid, wantState: BreakGlassOpen},
		}},
		{name: "notes too long", min: 1, steps: []bgStep{
			{rev: BreakGlassReview{Reviewer: bob, Groups: []string{"security"}, Outcome: OutcomeJustified, Notes: strings.Repeat("n", 1025)}, wantErr: ErrInvalid, wantState: BreakGlassOpen},
		}},
		{name: "no reviewer", min: 1, steps: []bgStep{
			{rev: justified("", "security"), wantErr: ErrInvalid, wantState: BreakGlassOpen},
		}},
		{name: "entitlement without break-glass has no reviewers", min: 1, noBG: true, steps: []bgStep{
			{rev: justified(bob, "security"), wantErr: ErrBreakGlassNotAllowed, wantState: BreakGlassOpen},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rule := breakGlassRule()
			rule.MinReviewers = tt.min
			if tt.noBG {
				rule = nil
			}
			bg := openBreakGlass()
			for i, s := range tt.steps {
				at := now.Add(time.Duration(i+1) * time.Hour)
				before := cloneBreakGlass(bg)
				changed, err := ApplyBreakGlassReview(&bg, rule, s.rev, at)
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d: ApplyBreakGlassReview(%s) err = %v, want %v", i, s.rev.Reviewer, err, s.wantErr)
				}
				if changed != s.wantChanged || bg.State != s.wantState || bg.Outcome != s.wantOutcome {
					t.Fatalf("step %d: ApplyBreakGlassReview(%s) = %v, state %s %q; want %v, %s %q", i, s.rev.Reviewer, changed, bg.State, bg.Outcome, s.wantChanged, s.wantState, s.wantOutcome)
				}
				if err != nil {
					if diff := cmp.Diff(before, bg); diff != "" {
						t.Fatalf("step %d: refused review changed the use (-before +after):\n%s", i, diff)
					}
					continue
				}
				last := bg.Reviews[len(bg.Reviews)-1]
				if last.Reviewer != s.rev.Reviewer || !last.At.Equal(at) {
					t.Errorf("step %d: recorded review %+v, want %s at %v", i, last, s.rev.Reviewer, at)
				}
				if changed && !bg.ClosedAt.Equal(at) {
					t.Errorf("step %d: ClosedAt = %v, want %v", i, bg.ClosedAt, at)
				}
			}
		})
	}
}

func TestApplyBreakGlassReview_OverdueReviewIsAccepted(t *testing.T) {
	t.Parallel()
	bg := openBreakGlass()
	rule := breakGlassRule()
	rule.MinReviewers = 1
	late := bg.ReviewDue.Add(72 * time.Hour)
	if !bg.Overdue(late) {
		t.Fatalf("Overdue(%v) = false, want true", late)
	}
	changed, err := ApplyBreakGlassReview(&bg, rule, justified(bob, "security"), late)
	if err != nil || !changed || bg.Overdue(late) {
		t.Errorf("ApplyBreakGlassReview(late) = %v, %v; overdue %v; want the review to close it", changed, err, bg.Overdue(late))
	}
}

func TestBreakGlass_Overdue(t *testing.T) {
	t.Parallel()
	bg := openBreakGlass()
	closed := bg
	closed.State = BreakGlassClosed
	tests := []struct {
		name string
		bg   BreakGlass
		at   time.Time
		want bool
	}{
		{"open before the due time", bg, bg.ReviewDue.Add(-time.Nanosecond), false},
		{"open at the due time", bg, bg.ReviewDue, true},
		{"open after the due time", bg, bg.ReviewDue.Add(time.Hour), true},
		{"closed is never overdue", closed, bg.ReviewDue.Add(time.Hour), false},
	}
	for _, tt := range tests {
		if got := tt.bg.Overdue(tt.at); got != tt.want {
			t.Errorf("%s: Overdue() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
