package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/writ-dev/writ/internal/daemon"
)

// run parses args and runs the chosen command until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "writd",
		Short:         "Writ broker daemon: just-in-time, time-boxed credentials for SPIFFE workloads",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(serveCmd(stderr), devCmd(stdout, stderr), checkCmd(stdout), versionCmd(stdout))
	return root.ExecuteContext(ctx)
}

func serveCmd(logOut io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config writ.yaml",
		Short: "Run the broker from a configuration file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := daemon.LoadConfig(path)
			if err != nil {
				return err
			}
			m, err := daemon.New(cmd.Context(), cfg, daemon.Options{LogOutput: logOut})
			if err != nil {
				return err
			}
			<-cmd.Context().Done()
			m.Shutdown()
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "/etc/writ/writ.yaml", "configuration file")
	return cmd
}

func checkCmd(out io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check --config writ.yaml",
		Short: "Validate a configuration file and the policy it names, then exit",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			cfg, err := daemon.LoadConfig(path)
			if err != nil {
				return err
			}
			if err := checkPolicy(cfg.Policy); err != nil {
				return err
			}
			fmt.Fprintf(out, "%s: ok\n", path)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "/etc/writ/writ.yaml", "configuration file")
	return cmd
}
