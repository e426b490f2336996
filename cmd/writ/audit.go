package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

const defaultHTTPTimeout = 10 * time.Second

// errVerify marks a ledger that failed verification.
var errVerify = errors.New("ledger verification failed")

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with the ledger"}
	cmd.AddCommand(auditVerifyCmd(), auditExportCmd(), auditSearchCmd(), auditSnapshotCmd())
	return cmd
}

func auditVerifyCmd() *cobra.Command {
	var dir, output string
	cmd := &cobra.Command{
		Use:   "verify --data-dir DIR",
		Short: "Check the ledger's hash chain offline and name the first bad record",
		Long: "verify opens the ledger in a data directory read-only (stop the broker or copy the\n" +
			"directory first) and checks every record: it decodes, its sequence number follows the\n" +
			"previous one without a gap, it links to the previous record's hash, and its own hash\n" +
			"matches its contents. The first bad sequence number is reported.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if dir == "" {
				return fmt.Errorf("--data-dir is required: %w", errUsage)
			}
			store, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{ReadOnly: true, Check: true})
			if err != nil {
				return err
			}
			defer store.Close()
			sum, verr := audit.Verify(cmd.Context(), store)
			out := cmd.OutOrStdout()
			var ce *audit.ChainError
			if output == "json" {
				res := map[string]any{"ok": verr == nil, "records": sum.Records, "head": sum.Head}
				if errors.As(verr, &ce) {
					res["first_bad_seq"] = ce.Seq
					res["reason"] = ce.Reason
				}
				if err := writeJSON(out, res); err != nil {
					return err
				}
			} else if verr == nil {
				fmt.Fprintf(out, "ledger ok: %d records, head %s\n", sum.Records, sum.Head)
			}
			if verr != nil {
				if errors.As(verr, &ce) {
					return fmt.Errorf("%w: first bad record is seq %d: %s", errVerify, ce.Seq, ce.Reason)
				}
				return fmt.Errorf("%w: %w", errVerify, verr)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "data-dir", "", "the broker's data directory (required)")
	outputFlag(cmd, &output)
	return cmd
}
