package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func fmtTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format(time.RFC3339)
}

func stateName(s brokerv1.RequestState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "REQUEST_STATE_"))
}

// requestJSON is the stable JSON shape of a request for --output json.
func requestJSON(r *brokerv1.AccessRequest) map[string]any {
	reviews := []map[string]any{}
	for _, rv := range r.GetReviews() {
		reviews = append(reviews, map[string]any{"reviewer": rv.GetReviewer(), "decision": rv.GetDecision(), "comment": rv.GetComment(), "stage": rv.GetStage(), "at": fmtTime(rv.GetAt())})
	}
	return map[string]any{
		"id": r.GetId(), "state": stateName(r.GetState()), "entitlement": r.GetEntitlement(),
		"beneficiary": r.GetBeneficiary(), "requester": r.GetRequester(), "duration": r.GetDuration().AsDuration().String(),
		"reason": r.GetReason(), "ticket": r.GetTicket(), "rule": r.GetRule(), "created_at": fmtTime(r.GetCreatedAt()),
		"pending_until": fmtTime(r.GetPendingUntil()), "approved_at": fmtTime(r.GetApprovedAt()), "window_end": fmtTime(r.GetWindowEnd()),
		"resolved_by": r.GetResolvedBy(), "resolution_note": r.GetResolutionNote(), "reviews": reviews,
	}
}

// printRequest writes a request as aligned key/value lines.
func printRequest(w io.Writer, r *brokerv1.AccessRequest) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "request\t%s\n", esc(r.GetId()))
	fmt.Fprintf(tw, "state\t%s\n", stateName(r.GetState()))
	fmt.Fprintf(tw, "entitlement\t%s\n", esc(r.GetEntitlement()))
	fmt.Fprintf(tw, "beneficiary\t%s\n", esc(r.GetBeneficiary()))
	fmt.Fprintf(tw, "requester\t%s\n", esc(r.GetRequester()))
	fmt.Fprintf(tw, "duration\t%s (from approval)\n", r.GetDuration().AsDuration())
	fmt.Fprintf(tw, "reason\t%s\n", escBlock(r.GetReason()))
	if r.GetTicket() != "" {
		fmt.Fprintf(tw, "ticket\t%s\n", esc(r.GetTicket()))
	}
	fmt.Fprintf(tw, "created\t%s (pending until %s)\n", fmtTime(r.GetCreatedAt()), fmtTime(r.GetPendingUntil()))
	if r.GetApprovedAt() != nil {
		fmt.Fprintf(tw, "window\t%s → %s\n", fmtTime(r.GetApprovedAt()), fmtTime(r.GetWindowEnd()))
	}
	for _, rv := range r.GetReviews() {
		fmt.Fprintf(tw, "review\t%s %s at %s: %s\n", esc(rv.GetReviewer()), esc(rv.GetDecision()), fmtTime(rv.GetAt()), escBlock(rv.GetComment()))
	}
	if r.GetResolvedBy() != "" {
		fmt.Fprintf(tw, "resolved by\t%s: %s\n", esc(r.GetResolvedBy()), escBlock(r.GetResolutionNote()))
	}
	return tw.Flush()
}

func printRequestTable(w io.Writer, rs []*brokerv1.AccessRequest) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tENTITLEMENT\tBENEFICIARY\tREQUESTER\tDURATION\tCREATED")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", esc(r.GetId()), stateName(r.GetState()), esc(r.GetEntitlement()),
			esc(r.GetBeneficiary()), esc(r.GetRequester()), r.GetDuration().AsDuration(), fmtTime(r.GetCreatedAt()))
	}
	return tw.Flush()
}

func stagesJSON(st []*adminv1.StageStatus) []map[string]any {
	out := []map[string]any{}
	for _, s := range st {
		out = append(out, map[string]any{"groups": s.GetGroups(), "min": s.GetMin(), "have": s.GetHave(), "approvers": s.GetApprovers()})
	}
	return out
}

func grantsJSON(gs []*adminv1.GrantSummary) []map[string]any {
	out := []map[string]any{}
	for _, g := range gs {
		out = append(out, map[string]any{"grant_id": g.GetGrantId(), "request_id": g.GetRequestId(), "kind": g.GetKind(),
			"reference": g.GetReference(), "issued_at": fmtTime(g.GetIssuedAt()), "expires_at": fmtTime(g.GetExpiresAt())})
	}
	return out
}
