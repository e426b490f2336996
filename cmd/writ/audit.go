package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

const defaultHTTPTimeout = 10 * time.Second

// errVerify marks a ledger that failed verification.
var errVerify = errors.New("ledger verification failed")

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with the ledger"}
	cmd.AddCommand(auditVerifyCmd(), auditWitnessCmd(), auditExportCmd(), auditSearchCmd(), auditSnapshotCmd(), auditProveCmd())
	return cmd
}

func auditVerifyCmd() *cobra.Command {
	var dir, export, keyFile, cpDir, output string
	var archives []string
	cmd := &cobra.Command{
		Use:   "verify (--data-dir DIR | --export FILE) [--key FILE] [--checkpoints DIR]",
		Short: "Check the ledger offline: records, hash chain, Merkle tree and signed checkpoints",
		Long: "verify checks a ledger with no broker and no network: a data directory (opened read-only;\n" +
			"stop the broker or copy the directory first) or an export file (one stored record per line).\n" +
			"Every record must decode, follow the previous one without a gap and link to its hash; the\n" +
			"Merkle tree is recomputed from the records. With --key (the ledger's verifier key), every\n" +
			"checkpoint stored in the data directory and in --checkpoints DIR (a witness's directory,\n" +
			"its checkpoints.log) must carry a valid signature and match the recomputed tree at its size,\n" +
			"and the records must reach the newest checkpoint: removing the newest records, or changing\n" +
			"one and recomputing every later hash, is caught. The first bad sequence number is reported.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if (dir == "") == (export == "") {
				return fmt.Errorf("give exactly one of --data-dir or --export: %w", errUsage)
			}
			if cpDir != "" && keyFile == "" {
				return fmt.Errorf("--checkpoints needs --key (the ledger's verifier key) to check their signatures: %w", errUsage)
			}
			var verifier note.Verifier
			if keyFile != "" {
				v, err := readVerifierKey(keyFile)
				if err != nil {
					return err
				}
				verifier = v
			}
			var cps []audit.SignedCheckpoint
			if cpDir != "" {
				var err error
				path := filepath.Join(cpDir, checkpoint.CheckpointsFile)
				if _, err := os.Stat(path); err != nil {
					return fmt.Errorf("--checkpoints: %w", err)
				}
				if cps, err = readCheckpointFile(path); err != nil {
					return fmt.Errorf("%w: %w", errVerify, err)
				}
			}
			var (
				sum  audit.LogSummary
				verr error
				line func() int
			)
			if dir != "" {
				sum, verr = verifyDataDir(cmd.Context(), filepath.Join(dir, "writ.db"), verifier, cps, archives)
			} else {
				f, err := os.Open(export)
				if err != nil {
					return err
				}
				defer f.Close()
				es := audit.NewExportScanner(f)
				line = es.Line
				sum, verr = audit.VerifyLog(cmd.Context(), es, verifier, cps)
			}
			return reportVerify(cmd.OutOrStdout(), output, sum, verr, line, verifier != nil)
		},
	}
	cmd.Flags().StringVar(&dir, "data-dir", "", "the broker's data directory (or a copy)")
	cmd.Flags().StringVar(&export, "export", "", "an export file: one stored record per line")
	cmd.Flags().StringVar(&keyFile, "key", "", "file holding the ledger's verifier key (GET /.well-known/writ-ledger/key)")
	cmd.Flags().StringVar(&cpDir, "checkpoints", "", "a witness's directory holding checkpoints.log")
	cmd.Flags().StringSliceVar(&archives, "archive", nil, "with --data-dir: the archives of records removed by writ admin archive, oldest first")
	outputFlag(cmd, &output)
	return cmd
}

// verifyDataDir verifies the ledger in the bbolt file path, read-only, with
// the checkpoints stored beside it (when there is a verifier) and cps. A
// damaged file is reported, never a panic: bbolt panics on some corrupt
// pages, and that is turned into an error here.
func verifyDataDir(ctx context.Context, path string, verifier note.Verifier, cps []audit.SignedCheckpoint, archives []string) (sum audit.LogSummary, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s is damaged (bbolt: %v): %w", path, r, audit.ErrTampered)
		}
	}()
	store, err := boltstore.Open(path, boltstore.Options{ReadOnly: true, Check: true})
	if err != nil {
		return sum, err
	}
	defer store.Close()
	if verifier != nil {
		err := store.Checkpoints(ctx, func(size int64, signed []byte) error {
			cps = append(cps, audit.SignedCheckpoint{Source: fmt.Sprintf("stored in the data dir for size %d", size), Note: signed})
			return nil
		})
		if err != nil {
			return sum, err
		}
	}
	scanner, done, err := withArchives(ctx, store, archives)
	if err != nil {
		return sum, err
	}
	defer done()
	return audit.VerifyLog(ctx, scanner, verifier, cps)
}

func reportVerify(out io.Writer, output string, sum audit.LogSummary, verr error, line func() int, haveKey bool) error {
	ce, isChain := errors.AsType[*audit.ChainError](verr)
	cpe, isCP := errors.AsType[*audit.CheckpointError](verr)
	where := ""
	if isChain && line != nil && line() > 0 {
		where = fmt.Sprintf(" (export line %d)", line())
	}
	if output == "json" {
		res := map[string]any{"ok": verr == nil, "records": sum.Records, "head": sum.Head}
		if verr == nil {
			res["tree_root"] = sum.RootString()
			res["checkpoints"] = sum.Checkpoints
			res["newest_checkpoint"] = sum.Newest
		}
		switch {
		case isChain:
			res["first_bad_seq"] = ce.Seq
			res["reason"] = ce.Reason + where
		case isCP:
			res["checkpoint"] = cpe.Source
			res["reason"] = cpe.Reason
		case verr != nil:
			res["reason"] = verr.Error()
		}
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else if verr == nil {
		fmt.Fprintf(out, "ledger ok: %d records, head %s, tree root %s\n", sum.Records, sum.Head, sum.RootString())
		switch {
		case !haveKey:
			fmt.Fprintln(out, "checkpoints not checked: give --key (and --checkpoints DIR) to detect truncation and rewrites")
		case sum.Checkpoints == 0:
			fmt.Fprintln(out, "no checkpoints found: truncation and rewrites are not detectable without one")
		default:
			fmt.Fprintf(out, "%d checkpoints verified; the records reach the newest (size %d)\n", sum.Checkpoints, sum.Newest)
		}
	}
	switch {
	case verr == nil:
		return nil
	case isChain:
		return fmt.Errorf("%w: first bad record is seq %d: %s%s", errVerify, ce.Seq, ce.Reason, where)
	case isCP:
		return fmt.Errorf("%w: %s", errVerify, cpe.Error())
	default:
		return fmt.Errorf("%w: %w", errVerify, verr)
	}
}

// readVerifierKey reads a note verifier key ("name+hash+key") from a file.
func readVerifierKey(path string) (note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("--key %s: not a note verifier key (name+hash+key): %v: %w", path, err, errUsage)
	}
	return v, nil
}

// readCheckpointFile reads a witness's checkpoints.log; a missing file is
// no checkpoints.
func readCheckpointFile(path string) ([]audit.SignedCheckpoint, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	notes, err := audit.SplitNotes(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]audit.SignedCheckpoint, len(notes))
	for i, n := range notes {
		out[i] = audit.SignedCheckpoint{Source: fmt.Sprintf("%s line %d", path, n.Line), Note: n.Note}
	}
	return out, nil
}
