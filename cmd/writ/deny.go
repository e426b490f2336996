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
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			c, done, err := f.dial(ctx)
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.DenyRequest(ctx, &adminv1.DenyRequestRequest{Id: args[0], Comment: comment})
			if err != nil {
				return err
			}
			return printDecision(cmd, output, resp.GetRequest())
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&comment, "comment", "", "comment recorded in the ledger")
	outputFlag(cmd, &output)
	return cmd
}
