package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Ask the policy in force"}
	cmd.AddCommand(policyExplainCmd())
	return cmd
}

func policyExplainCmd() *cobra.Command {
	var (
		f                  adminFlags
		forID, entitlement string
		output             string
	)
	cmd := &cobra.Command{
		Use:   "explain --for SPIFFE_ID --entitlement NAME",
		Short: "Would this workload get this entitlement, by which rule, with what approvals?",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if forID == "" || entitlement == "" {
				return fmt.Errorf("--for and --entitlement are required: %w", errUsage)
			}
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				ex, err := c.ExplainPolicy(ctx, &adminv1.ExplainPolicyRequest{SpiffeId: forID, Entitlement: entitlement})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					stages := []map[string]any{}
					for _, s := range ex.GetStages() {
						stages = append(stages, map[string]any{"groups": s.GetGroups(), "min": s.GetMin()})
					}
					return writeJSON(out, map[string]any{"eligible": ex.GetEligible(), "rule": ex.GetRule(), "approval_mode": ex.GetApprovalMode(),
						"max_ttl": ex.GetMaxTtl().AsDuration().String(), "window": ex.GetWindow().AsDuration().String(), "condition": ex.GetCondition(),
						"stages": stages, "summary": ex.GetSummary()})
				}
				fmt.Fprintln(out, escIndented(ex.GetSummary(), "  "))
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "eligible\t%v\n", ex.GetEligible())
				if ex.GetRule() != "" {
					fmt.Fprintf(tw, "rule\t%s\n", esc(ex.GetRule()))
				}
				fmt.Fprintf(tw, "approval\t%s\n", esc(ex.GetApprovalMode()))
				for i, s := range ex.GetStages() {
					fmt.Fprintf(tw, "stage %d\t%d of %s\n", i+1, s.GetMin(), escList(s.GetGroups()))
				}
				return tw.Flush()
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&forID, "for", "", "the workload's SPIFFE ID")
	cmd.Flags().StringVarP(&entitlement, "entitlement", "e", "", "entitlement name")
	outputFlag(cmd, &output)
	return cmd
}
