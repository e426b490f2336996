package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

func reviewsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "reviews", Short: "Break-glass reviews: list and inspect"}
	cmd.AddCommand(reviewsListCmd(), reviewsShowCmd())
	return cmd
}

func reviewsListCmd() *cobra.Command {
	var (
		f             adminFlags
		open, overdue bool
		output        string
	)
	cmd := &cobra.Command{
		Use:   "list [--open] [--overdue]",
		Short: "List break-glass uses and their reviews, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.ListBreakGlass(ctx, &adminv1.ListBreakGlassRequest{Open: open, Overdue: overdue})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					list := []map[string]any{}
					for _, r := range resp.GetRecords() {
						list = append(list, bgJSON(r))
					}
					return writeJSON(out, list)
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tENTITLEMENT\tTAKER\tTAKEN\tDUE\tOUTCOME")
				for _, r := range resp.GetRecords() {
					state := esc(r.GetState())
					if r.GetOverdue() {
						state = "OVERDUE"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", esc(r.GetId()), state, esc(r.GetEntitlement()), esc(r.GetTaker()), fmtTime(r.GetTakenAt()), fmtTime(r.GetReviewDue()), esc(r.GetOutcome()))
				}
				return tw.Flush()
			})
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&open, "open", false, "only open reviews")
	cmd.Flags().BoolVar(&overdue, "overdue", false, "only overdue reviews")
	outputFlag(cmd, &output)
	return cmd
}

func reviewsShowCmd() *cobra.Command {
	var (
		f      adminFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a break-glass use: what was minted, why, and what the ledger recorded",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.GetBreakGlass(ctx, &adminv1.GetBreakGlassRequest{Id: args[0]})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					j := bgJSON(resp.GetRecord())
					events := []map[string]any{}
					for _, e := range resp.GetLedger() {
						events = append(events, map[string]any{"seq": e.GetSeq(), "time": fmtTime(e.GetTime()), "action": e.GetAction(), "outcome": e.GetOutcome(), "actor": e.GetActor(), "reason": e.GetReason()})
					}
					j["ledger"] = events
					return writeJSON(out, j)
				}
				printBreakGlass(out, resp.GetRecord())
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				for _, e := range resp.GetLedger() {
					fmt.Fprintf(tw, "ledger %d\t%s %s:%s by %s %s\n", e.GetSeq(), fmtTime(e.GetTime()), esc(e.GetAction()), esc(e.GetOutcome()), esc(e.GetActor()), escBlock(e.GetReason()))
				}
				return tw.Flush()
			})
		},
	}
	f.register(cmd)
	outputFlag(cmd, &output)
	return cmd
}

func reviewCmd() *cobra.Command {
	var (
		f                      adminFlags
		outcome, notes, output string
	)
	cmd := &cobra.Command{
		Use:   "review ID --outcome justified|unjustified --notes TEXT",
		Short: "Review a break-glass use (not your own); unjustified revokes what is still live",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if outcome != "justified" && outcome != "unjustified" {
				return fmt.Errorf("--outcome must be justified or unjustified: %w", errUsage)
			}
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.ReviewBreakGlass(ctx, &adminv1.ReviewBreakGlassRequest{Id: args[0], Outcome: outcome, Notes: notes})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					j := bgJSON(resp.GetRecord())
					results := []map[string]any{}
					for _, r := range resp.GetResults() {
						results = append(results, map[string]any{"grant_id": r.GetGrantId(), "reference": r.GetReference(), "outcome": r.GetOutcome(), "error": r.GetError()})
					}
					j["revocations"] = results
					return writeJSON(out, j)
				}
				r := resp.GetRecord()
				if r.GetState() == "closed" {
					fmt.Fprintf(out, "review %s closed: %s\n", esc(r.GetId()), esc(r.GetOutcome()))
				} else {
					fmt.Fprintf(out, "review %s recorded; still open (more reviewers needed)\n", esc(r.GetId()))
				}
				for _, res := range resp.GetResults() {
					fmt.Fprintf(out, "  credential %s %s: %s %s\n", esc(res.GetGrantId()), esc(res.GetReference()), esc(res.GetOutcome()), esc(res.GetError()))
				}
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&outcome, "outcome", "", "justified or unjustified (required)")
	cmd.Flags().StringVar(&notes, "notes", "", "findings, recorded in the ledger")
	outputFlag(cmd, &output)
	return cmd
}

func bgJSON(r *adminv1.BreakGlassRecord) map[string]any {
	reviews := []map[string]any{}
	for _, rv := range r.GetReviews() {
		reviews = append(reviews, map[string]any{"reviewer": rv.GetReviewer(), "outcome": rv.GetOutcome(), "notes": rv.GetNotes(), "at": fmtTime(rv.GetAt())})
	}
	return map[string]any{"id": r.GetId(), "state": r.GetState(), "overdue": r.GetOverdue(), "outcome": r.GetOutcome(),
		"taker": r.GetTaker(), "beneficiary": r.GetBeneficiary(), "entitlement": r.GetEntitlement(), "reason": r.GetReason(),
		"incident": r.GetIncident(), "grant_id": r.GetGrantId(), "credential_kind": r.GetCredentialKind(),
		"credential_reference": r.GetCredentialReference(), "credential_expires_at": fmtTime(r.GetCredentialExpiresAt()),
		"taken_at": fmtTime(r.GetTakenAt()), "review_due": fmtTime(r.GetReviewDue()), "closed_at": fmtTime(r.GetClosedAt()),
		"escalated_at": fmtTime(r.GetEscalatedAt()), "reviews": reviews}
}

func printBreakGlass(w io.Writer, r *adminv1.BreakGlassRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	state := esc(r.GetState())
	if r.GetOverdue() {
		state += " (OVERDUE)"
	}
	fmt.Fprintf(tw, "break-glass\t%s\n", esc(r.GetId()))
	fmt.Fprintf(tw, "state\t%s %s\n", state, esc(r.GetOutcome()))
	fmt.Fprintf(tw, "taker\t%s\n", esc(r.GetTaker()))
	fmt.Fprintf(tw, "beneficiary\t%s\n", esc(r.GetBeneficiary()))
	fmt.Fprintf(tw, "entitlement\t%s\n", esc(r.GetEntitlement()))
	fmt.Fprintf(tw, "reason\t%s\n", escBlock(r.GetReason()))
	fmt.Fprintf(tw, "incident\t%s\n", esc(r.GetIncident()))
	fmt.Fprintf(tw, "minted\t%s %s %s, expires %s\n", esc(r.GetGrantId()), esc(r.GetCredentialKind()), esc(r.GetCredentialReference()), fmtTime(r.GetCredentialExpiresAt()))
	fmt.Fprintf(tw, "taken\t%s; review due %s\n", fmtTime(r.GetTakenAt()), fmtTime(r.GetReviewDue()))
	for _, rv := range r.GetReviews() {
		fmt.Fprintf(tw, "review\t%s: %s at %s: %s\n", esc(rv.GetReviewer()), esc(rv.GetOutcome()), fmtTime(rv.GetAt()), escBlock(rv.GetNotes()))
	}
	_ = tw.Flush()
}
