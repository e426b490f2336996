package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func approveCmd() *cobra.Command {
	var (
		f       adminFlags
		comment string
		output  string
	)
	cmd := &cobra.Command{
		Use:   "approve ID --comment TEXT",
		Short: "Approve a pending request (you may not approve your own)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.ApproveRequest(ctx, &adminv1.ApproveRequestRequest{Id: args[0], Comment: comment})
				if err != nil {
					return err
				}
				return printDecision(cmd, output, resp.GetRequest())
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&comment, "comment", "", "comment recorded in the ledger")
	outputFlag(cmd, &output)
	return cmd
}

func printDecision(cmd *cobra.Command, output string, r *brokerv1.AccessRequest) error {
	if output == "json" {
		return writeJSON(cmd.OutOrStdout(), requestJSON(r))
	}
	msg := fmt.Sprintf("request %s is %s", esc(r.GetId()), stateName(r.GetState()))
	if r.GetState() == brokerv1.RequestState_REQUEST_STATE_APPROVED {
		msg += fmt.Sprintf(" until %s", fmtTime(r.GetWindowEnd()))
	}
	_, err := fmt.Fprintln(cmd.OutOrStdout(), msg)
	return err
}
