package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/writ-dev/writ/internal/buildinfo"
)

func versionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show writ's version and the commit it was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			info := buildinfo.Read()
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), info)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "writ", info)
			return nil
		},
	}
	outputFlag(cmd, &output)
	return cmd
}
