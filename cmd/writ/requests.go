package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func requestsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "requests", Short: "List and inspect access requests"}
	cmd.AddCommand(requestsListCmd(), requestsShowCmd())
	return cmd
}

func requestsListCmd() *cobra.Command {
	var (
		f             adminFlags
		pending, mine bool
		limit         int
		output        string
	)
	cmd := &cobra.Command{
		Use:   "list [--pending] [--mine]",
		Short: "List requests, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.ListRequests(ctx, &adminv1.ListRequestsRequest{Pending: pending, Mine: mine, PageSize: int32(limit)})
				if err != nil {
					return err
				}
				if output == "json" {
					list := []map[string]any{}
					for _, r := range resp.GetRequests() {
						list = append(list, requestJSON(r))
					}
					return writeJSON(cmd.OutOrStdout(), list)
				}
				return printRequestTable(cmd.OutOrStdout(), resp.GetRequests())
			})
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&pending, "pending", false, "only pending requests")
	cmd.Flags().BoolVar(&mine, "mine", false, "only requests I made")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many")
	outputFlag(cmd, &output)
	return cmd
}

func requestsShowCmd() *cobra.Command {
	var (
		f      adminFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a request with everything needed to decide on it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.GetRequest(ctx, &adminv1.GetRequestRequest{Id: args[0]})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if output == "json" {
					j := requestJSON(resp.GetRequest())
					j["effective_ttl"] = resp.GetEffectiveTtl().AsDuration().String()
					j["stages"] = stagesJSON(resp.GetStages())
					j["grants"] = grantsJSON(resp.GetGrants())
					j["recent_grants"] = grantsJSON(resp.GetRecentGrants())
					return writeJSON(out, j)
				}
				if err := printRequest(out, resp.GetRequest()); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "effective ttl\t%s per credential (min of the window, max_ttl and the issuer's limit)\n", resp.GetEffectiveTtl().AsDuration())
				for i, st := range resp.GetStages() {
					need := ""
					if st.GetHave() < st.GetMin() && resp.GetRequest().GetState() == brokerv1.RequestState_REQUEST_STATE_PENDING {
						need = fmt.Sprintf("; needs %d more from %s", st.GetMin()-st.GetHave(), escList(st.GetGroups()))
					}
					fmt.Fprintf(tw, "stage %d\t%d of %d from %s: %s%s\n", i+1, st.GetHave(), st.GetMin(), escList(st.GetGroups()), escList(st.GetApprovers()), need)
				}
				for _, g := range resp.GetGrants() {
					fmt.Fprintf(tw, "credential\t%s %s %s expires %s\n", esc(g.GetGrantId()), esc(g.GetKind()), esc(g.GetReference()), fmtTime(g.GetExpiresAt()))
				}
				fmt.Fprintf(tw, "recent grants\t%d for the beneficiary in the last 7 days\n", len(resp.GetRecentGrants()))
				for _, g := range resp.GetRecentGrants() {
					req := g.GetRequestId()
					if req == "" {
						req = "auto"
					}
					fmt.Fprintf(tw, "\t%s %s (%s) issued %s\n", esc(g.GetGrantId()), esc(g.GetKind()), esc(req), fmtTime(g.GetIssuedAt()))
				}
				return tw.Flush()
			})
		},
	}
	f.register(cmd)
	outputFlag(cmd, &output)
	return cmd
}
