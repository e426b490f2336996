package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

func entitlementsCmd() *cobra.Command {
	var (
		conn   connFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "entitlements",
		Short: "List the entitlements of the policy in force (operators only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), conn.timeout)
			defer cancel()
			cc, closeConn, err := conn.dial(ctx)
			if err != nil {
				return err
			}
			defer closeConn()
			resp, err := adminv1.NewAdminServiceClient(cc).ListEntitlements(ctx, &adminv1.ListEntitlementsRequest{})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				var list []map[string]any
				for _, e := range resp.GetEntitlements() {
					list = append(list, map[string]any{
						"name": e.GetName(), "owner": e.GetOwner(), "purpose": e.GetPurpose(),
						"issuer": e.GetIssuer(), "max_ttl": e.GetMaxTtl().AsDuration().String(),
						"requesters": e.GetRequesters(), "approval_mode": e.GetApprovalMode(), "condition": e.GetCondition(),
					})
				}
				return writeJSON(out, list)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tISSUER\tMAX TTL\tAPPROVAL\tOWNER\tREQUESTERS")
			for _, e := range resp.GetEntitlements() {
				mode := e.GetApprovalMode()
				if e.GetCondition() != "" {
					mode += " if " + e.GetCondition()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", esc(e.GetName()), esc(e.GetIssuer()), e.GetMaxTtl().AsDuration(), esc(mode), esc(e.GetOwner()), escJoin(e.GetRequesters(), ","))
			}
			return tw.Flush()
		},
	}
	conn.register(cmd)
	outputFlag(cmd, &output)
	return cmd
}
