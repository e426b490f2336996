package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
)

// run parses args and runs one writ command.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "writ",
		Short:         "Writ: just-in-time, time-boxed credentials for SPIFFE workloads",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(credentialCmd(), requestCmd(), requestsCmd(), approveCmd(), denyCmd(), revokeCmd(),
		breakglassCmd(), reviewsCmd(), reviewCmd(), policyCmd(), loginCmd(), whoamiCmd(), jwksCmd(), entitlementsCmd(), auditCmd(), agentCmd(),
		logoutCmd(), profilesCmd(), versionCmd())
	return root.ExecuteContext(ctx)
}
