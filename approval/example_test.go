package approval_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/writ-dev/writ/approval"
)

// ExampleApplyReview shows the separation of duties: the requester cannot
// approve their own request, nobody counts twice, and one person counts
// toward one stage only, so two stages need two people.
func ExampleApplyReview() {
	now := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	rule, _ := approval.ParseRequester("spiffe://example.org/ns/prod/*", "example.org")
	e := &approval.Entitlement{
		Name:       "orders-db.write",
		MaxTTL:     15 * time.Minute,
		Requesters: []approval.Requester{rule},
		Mode:       approval.ModeApprovers,
		Stages: []approval.Stage{
			{Groups: []string{"dba"}, Min: 1},
			{Groups: []string{"security"}, Min: 1},
		},
		Window: 8 * time.Hour,
	}
	const (
		rita  = approval.Principal("oidc:https://idp.example.org#rita")
		alice = approval.Principal("oidc:https://idp.example.org#alice")
		bob   = approval.Principal("oidc:https://idp.example.org#bob")
	)
	r, err := approval.NewRequest(approval.RequestInput{
		ID: "r_1", Requester: rita, Beneficiary: "spiffe://example.org/ns/prod/orders",
		Duration: 2 * time.Hour, Reason: "backfill after CHG-42",
	}, e, now)
	if err != nil {
		fmt.Println(err)
		return
	}

	review := func(who approval.Principal, groups ...string) {
		rev := approval.Review{Reviewer: who, Groups: groups, Decision: approval.DecisionApprove}
		_, err := approval.ApplyReview(&r, e, rev, now)
		switch {
		case errors.Is(err, approval.ErrSelfApproval):
			fmt.Printf("%s: refused, self-approval\n", who)
		case errors.Is(err, approval.ErrAlreadyReviewed):
			fmt.Printf("%s: refused, already reviewed\n", who)
		case err != nil:
			fmt.Printf("%s: refused: %v\n", who, err)
		default:
			fmt.Printf("%s: counted toward stage %d; request is %s\n", who, r.Reviews[len(r.Reviews)-1].Stage, r.State)
		}
	}
	review(rita, "dba", "security")
	review(alice, "dba", "security")
	review(alice, "dba", "security")
	review(bob, "security")
	fmt.Println("window ends", r.WindowEnd.Format(time.Kitchen))
	// Output:
	// oidc:https://idp.example.org#rita: refused, self-approval
	// oidc:https://idp.example.org#alice: counted toward stage 0; request is pending
	// oidc:https://idp.example.org#alice: refused, already reviewed
	// oidc:https://idp.example.org#bob: counted toward stage 1; request is approved
	// window ends 11:00AM
}
