package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

func whoamiCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show who the broker sees you as",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			c, done, err := f.dial(ctx)
			if err != nil {
				return err
			}
			defer done()
			me, err := c.WhoAmI(ctx, &adminv1.WhoAmIRequest{})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (groups: %s; token expires %s)\n", esc(me.GetPrincipal()), escJoin(me.GetGroups(), ", "), fmtTime(me.GetExpiresAt()))
			return nil
		},
	}
	f.register(cmd)
	return cmd
}
