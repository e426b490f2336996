package main

import (
	"context"

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

func denyCmd() *cobra.Command {
	var (
		f       adminFlags
		comment string
		output  string
	)
	cmd := &cobra.Command{
		Use:   "deny ID --comment TEXT",
		Short: "Deny a pending request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.DenyRequest(ctx, &adminv1.DenyRequestRequest{Id: args[0], Comment: comment})
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
