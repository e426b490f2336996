package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// actionArchived is the ledger action recording an archive.
const actionArchived = "ledger_archived"

func adminCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Operate on a broker's data directory"}
	cmd.AddCommand(adminArchiveCmd())
	return cmd
}

func adminArchiveCmd() *cobra.Command {
	var (
		dir, out, keyFile string
		before            uint64
	)
	cmd := &cobra.Command{
		Use:   "archive --data-dir DIR --before-seq N --out FILE [--key FILE]",
		Short: "Move the ledger's oldest records to an archive file, keeping their Merkle tree hashes",
		Long: "archive keeps the live ledger small. On a stopped broker's data directory it exports the\n" +
			"records before sequence number N that are not archived yet to FILE (jsonl, records as\n" +
			"stored, written atomically with mode 0600 and fsynced), checks every one against the leaf\n" +
			"hash the Merkle tree stores for it and the tree against the newest signed checkpoint,\n" +
			"which must cover them (with --key its signature is checked too), then removes them from\n" +
			"the live store and records the archive in the ledger. The tree's hashes stay: later\n" +
			"checkpoints, consistency proofs and inclusion proofs of the remaining records still\n" +
			"verify. Verify the whole history with\n" +
			"  writ audit verify --data-dir DIR --archive FILE [--archive LATER-FILE ...]\n" +
			"Keep the archive where the ledger's other copies are kept (a witness, a backup).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || out == "" || before < 2 {
				return fmt.Errorf("--data-dir, --out and --before-seq (at least 2) are required: %w", errUsage)
			}
			var verifier note.Verifier
			if keyFile != "" {
				v, err := readVerifierKey(keyFile)
				if err != nil {
					return err
				}
				verifier = v
			}
			return archive(cmd.Context(), cmd.OutOrStdout(), filepath.Join(dir, "writ.db"), before-1, out, verifier)
		},
	}
	cmd.Flags().StringVar(&dir, "data-dir", "", "the stopped broker's data directory")
	cmd.Flags().Uint64Var(&before, "before-seq", 0, "archive the records before this sequence number")
	cmd.Flags().StringVar(&out, "out", "", "archive file to write")
	cmd.Flags().StringVar(&keyFile, "key", "", "the ledger's verifier key, to check the checkpoint's signature")
	return cmd
}

func archive(ctx context.Context, stdout io.Writer, path string, through uint64, out string, verifier note.Verifier) error {
	store, err := boltstore.Open(path, boltstore.Options{})
	if errors.Is(err, boltstore.ErrInUse) {
		return fmt.Errorf("%w (archive works on a stopped broker's data directory)", err)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	from, err := store.ArchivedThrough(ctx)
	if err != nil {
		return err
	}
	from++
	if through < from {
		return fmt.Errorf("records before %d are already archived (through %d): %w", through+1, from-1, errUsage)
	}
	cp, err := coveringCheckpoint(ctx, store, through, verifier)
	if err != nil {
		return err
	}

	// Export, checking each record against the tree's stored leaf hash.
	sum := sha256.New()
	var n uint64
	err = writeAtomically(nil, out, func(w io.Writer) error {
		mw := io.MultiWriter(w, sum)
		next := from
		return store.ExportRecords(ctx, audit.Query{FromSeq: from, ToSeq: through}, func(r audit.Record) error {
			if r.Seq != next {
				return fmt.Errorf("%w: record %d is missing from the live ledger", errVerify, next)
			}
			next++
			leaf, err := store.ReadHashes([]int64{tlog.StoredHashIndex(0, int64(r.Seq)-1)})
			if err != nil {
				return err
			}
			if leaf[0] != tlog.RecordHash(r.Raw) {
				return fmt.Errorf("%w: record %d does not match the leaf hash its Merkle tree holds (run writ audit verify)", errVerify, r.Seq)
			}
			n++
			if _, err := mw.Write(r.Raw); err != nil {
				return err
			}
			_, err = mw.Write([]byte{'\n'})
			return err
		})
	})
	if err != nil {
		return err
	}
	if n != through-from+1 {
		return fmt.Errorf("%w: exported %d records, want %d (%d..%d)", errVerify, n, through-from+1, from, through)
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	if err := store.DropPrefix(ctx, through); err != nil {
		return err
	}
	log, err := audit.New(audit.Config{Store: store})
	if err != nil {
		return err
	}
	e, err := log.Append(ctx, audit.Event{Action: actionArchived, Actor: localActor(), Outcome: "archived",
		Reason: fmt.Sprintf("records %d to %d moved to an archive file", from, through),
		Details: map[string]string{"from_seq": fmt.Sprint(from), "through_seq": fmt.Sprint(through), "records": fmt.Sprint(n),
			"sha256": digest, "file": filepath.Base(out), "checkpoint_size": fmt.Sprint(cp.Size)}})
	if err != nil {
		return fmt.Errorf("records archived to %s and dropped, but the archive could not be recorded in the ledger: %w", out, err)
	}
	fmt.Fprintf(stdout, "archived records %d to %d (%d) to %s, sha256 %s; covered by the checkpoint at size %d; recorded as ledger record %d\n",
		from, through, n, out, digest, cp.Size, e.Seq)
	return nil
}

// coveringCheckpoint returns the newest stored checkpoint, after checking
// that it covers through, that its root is the stored tree's root at its
// size, and (with a verifier) its signature.
func coveringCheckpoint(ctx context.Context, store *boltstore.Store, through uint64, verifier note.Verifier) (audit.Checkpoint, error) {
	size, signed, ok, err := store.LatestCheckpoint(ctx)
	if err != nil {
		return audit.Checkpoint{}, err
	}
	if !ok || uint64(size) < through {
		return audit.Checkpoint{}, fmt.Errorf("no signed checkpoint covers records up to %d (the newest covers %d): start the broker until it signs one, then archive: %w",
			through, size, boltstore.ErrNotCovered)
	}
	var cp audit.Checkpoint
	if verifier != nil {
		cp, err = audit.OpenCheckpoint(signed, verifier)
	} else if text, _, ok := cutNote(signed); ok {
		cp, err = audit.ParseCheckpoint(text)
	} else {
		err = fmt.Errorf("stored checkpoint for size %d is not a signed note", size)
	}
	if err != nil {
		return cp, fmt.Errorf("%w: %w", errVerify, err)
	}
	root, err := audit.TreeHash(ctx, store, cp.Size)
	if err != nil {
		return cp, err
	}
	if root != cp.Hash {
		return cp, fmt.Errorf("%w: the stored Merkle tree at size %d does not match its checkpoint (run writ audit verify)", errVerify, cp.Size)
	}
	return cp, nil
}

// localActor names who archived: the local user and host.
func localActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "local:" + name + "@" + host
}

// archiveScanner reads archive files, then the live store: the whole
// ledger, for VerifyLog.
type archiveScanner struct {
	files []*os.File
	store audit.Scanner
}

func (a archiveScanner) ScanRecords(ctx context.Context, fn func(seq uint64, raw []byte) error) error {
	for _, f := range a.files {
		if err := audit.NewExportScanner(f).ScanRecords(ctx, fn); err != nil {
			return fmt.Errorf("archive %s: %w", f.Name(), err)
		}
	}
	return a.store.ScanRecords(ctx, fn)
}

// withArchives returns the scanner VerifyLog should read: the archives then
// the store. A store whose oldest records were archived needs them.
func withArchives(ctx context.Context, store *boltstore.Store, archives []string) (audit.Scanner, func(), error) {
	through, err := store.ArchivedThrough(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(archives) == 0 {
		if through > 0 {
			return nil, nil, fmt.Errorf("records 1 to %d were archived (writ admin archive): give their archive files with --archive: %w", through, errUsage)
		}
		return store, func() {}, nil
	}
	a := archiveScanner{store: store}
	done := func() {
		for _, f := range a.files {
			_ = f.Close()
		}
	}
	for _, name := range archives {
		f, err := os.Open(name)
		if err != nil {
			done()
			return nil, nil, err
		}
		a.files = append(a.files, f)
	}
	return a, done, nil
}
