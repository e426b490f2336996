package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func breakglassCmd() *cobra.Command {
	var (
		f                          adminFlags
		conn                       connFlags
		entitlement, forID, reason string
		incident, output           string
		ttl                        time.Duration
		asWorkload                 bool
	)
	cmd := &cobra.Command{
		Use:   "breakglass --entitlement NAME --reason TEXT [--incident ID] [--for SPIFFE_ID]",
		Short: "Take access at once, without approval, in an emergency (always reviewed afterwards)",
		Long: "breakglass mints a credential at once for an entitlement whose policy allows break-glass.\n" +
			"It is capped shorter than normal, marked as break-glass, alerted to the reviewers and to the\n" +
			"approvers it skipped, and opens a review that must be closed by others within the policy's\n" +
			"review_within. While one of your reviews is overdue you cannot break glass again.\n\n" +
			"A signed-in person takes it (for a workload with --for). A workload takes it for itself with\n" +
			"--as-workload and its SVID (--svid-dir or a Workload API socket).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if entitlement == "" || reason == "" {
				return fmt.Errorf("--entitlement and --reason are required: %w", errUsage)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			var (
				cred            *brokerv1.Credential
				reviewID, until string
			)
			if asWorkload {
				if forID != "" {
					return fmt.Errorf("--for is for people; a workload breaks glass for itself: %w", errUsage)
				}
				conn.brokerID = f.brokerID
				cc, done, err := conn.dial(ctx)
				if err != nil {
					return err
				}
				defer done()
				req := &brokerv1.BreakGlassRequest{Entitlement: entitlement, Reason: reason, Incident: incident}
				if ttl > 0 {
					req.Ttl = durationpb.New(ttl)
				}
				resp, err := brokerv1.NewBrokerServiceClient(cc).BreakGlass(ctx, req)
				if err != nil {
					return err
				}
				cred, reviewID, until = resp.GetCredential(), resp.GetReviewId(), fmtTime(resp.GetReviewDue())
			} else {
				c, done, err := f.dial(ctx)
				if err != nil {
					return err
				}
				defer done()
				req := &adminv1.TakeBreakGlassRequest{Entitlement: entitlement, Beneficiary: forID, Reason: reason, Incident: incident}
				if ttl > 0 {
					req.Ttl = durationpb.New(ttl)
				}
				resp, err := c.TakeBreakGlass(ctx, req)
				if err != nil {
					return err
				}
				cred, reviewID, until = resp.GetCredential(), resp.GetRecord().GetId(), fmtTime(resp.GetRecord().GetReviewDue())
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(out, map[string]any{"review_id": reviewID, "review_due": until, "grant_id": cred.GetGrantId(),
					"kind": kindName(cred.GetKind()), "secret": cred.GetSecret(), "reference": cred.GetReference(),
					"expires_at": fmtTime(cred.GetExpiresAt()), "break_glass": cred.GetBreakGlass()})
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "BREAK-GLASS\t%s: reviewers have been alerted; review due %s\n", esc(reviewID), until)
			fmt.Fprintf(tw, "grant\t%s\n", esc(cred.GetGrantId()))
			fmt.Fprintf(tw, "kind\t%s\n", kindName(cred.GetKind()))
			fmt.Fprintf(tw, "reference\t%s\n", esc(cred.GetReference()))
			fmt.Fprintf(tw, "expires\t%s\n", fmtTime(cred.GetExpiresAt()))
			fmt.Fprintf(tw, "credential\t%s\n", cred.GetSecret())
			return tw.Flush()
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&conn.broker, "broker", envOr("WRIT_BROKER", "127.0.0.1:8443"), "broker gRPC address, with --as-workload (env WRIT_BROKER)")
	cmd.Flags().StringVar(&conn.svidDir, "svid-dir", envOr("WRIT_SVID_DIR", ""), "the workload's SVID directory, with --as-workload (env WRIT_SVID_DIR)")
	cmd.Flags().StringVar(&conn.socket, "socket", envOr("SPIFFE_ENDPOINT_SOCKET", ""), "SPIFFE Workload API socket, with --as-workload")
	cmd.Flags().BoolVar(&asWorkload, "as-workload", false, "break glass as this workload (SVID), not as a signed-in person")
	cmd.Flags().StringVarP(&entitlement, "entitlement", "e", "", "entitlement name (required)")
	cmd.Flags().StringVar(&forID, "for", "", "SPIFFE ID of the workload the credential is for (people only)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required, recorded and sent to reviewers)")
	cmd.Flags().StringVar(&incident, "incident", "", "incident reference")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default and maximum: the break-glass cap)")
	outputFlag(cmd, &output)
	return cmd
}
