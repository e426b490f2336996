package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

func revokeCmd() *cobra.Command {
	var (
		f      adminFlags
		reason string
		output string
	)
	cmd := &cobra.Command{
		Use:   "revoke ID --reason TEXT",
		Short: "Revoke an approval and every credential minted under it",
		Long: "revoke ends an approval and revokes every credential minted under it: Vault tokens by\n" +
			"accessor, JWTs by adding their jti to the published deny-list. It prints a receipt with\n" +
			"one line per credential; revocations Vault could not take now are queued and retried.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return fmt.Errorf("--reason is required: it is recorded in the ledger: %w", errUsage)
			}
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.RevokeRequest(ctx, &adminv1.RevokeRequestRequest{Id: args[0], Reason: reason})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					results := []map[string]any{}
					for _, r := range resp.GetResults() {
						results = append(results, map[string]any{"grant_id": r.GetGrantId(), "kind": r.GetKind(), "reference": r.GetReference(), "outcome": r.GetOutcome(), "error": r.GetError()})
					}
					return writeJSON(out, map[string]any{"request": requestJSON(resp.GetRequest()), "results": results})
				}
				fmt.Fprintf(out, "request %s revoked; %d credentials:\n", esc(resp.GetRequest().GetId()), len(resp.GetResults()))
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "GRANT\tKIND\tREFERENCE\tOUTCOME\tNOTE")
				for _, r := range resp.GetResults() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", esc(r.GetGrantId()), esc(r.GetKind()), esc(r.GetReference()), esc(r.GetOutcome()), esc(r.GetError()))
				}
				return tw.Flush()
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the ledger)")
	outputFlag(cmd, &output)
	return cmd
}
