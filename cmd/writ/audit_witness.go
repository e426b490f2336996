package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
)

// pinnedKeyFile is where writ audit witness keeps the ledger's verifier key
// in its state directory.
const pinnedKeyFile = "ledger.pub"

func auditWitnessCmd() *cobra.Command {
	var broker, state, keyFile string
	cmd := &cobra.Command{
		Use:   "witness --broker URL --state DIR [--key FILE]",
		Short: "Witness the broker's ledger: accept its newest checkpoint only if it extends the last one seen",
		Long: "witness fetches the broker's newest signed checkpoint from its HTTP listener, checks the\n" +
			"signature with the ledger's verifier key (--key, else the key pinned in DIR, else fetched once\n" +
			"from the broker and pinned), and asks the broker for a consistency proof from the last\n" +
			"checkpoint stored in DIR. It refuses, with a non-zero exit and both tree sizes named, a log\n" +
			"that is not an extension of what it witnessed before: a rollback, a rewrite or a shrink.\n" +
			"Accepted checkpoints are appended to DIR/checkpoints.log, which writ audit verify\n" +
			"--checkpoints DIR reads. Run it from another machine, on a schedule.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if broker == "" || state == "" {
				return fmt.Errorf("--broker and --state are required: %w", errUsage)
			}
			base, err := url.Parse(broker)
			if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
				return fmt.Errorf("--broker %q: want the broker's HTTP base URL, e.g. https://writ.example.org: %w", broker, errUsage)
			}
			w := &witness{base: strings.TrimSuffix(broker, "/"), state: state, out: cmd.OutOrStdout()}
			return w.run(cmd.Context(), keyFile)
		},
	}
	cmd.Flags().StringVar(&broker, "broker", envOr("WRIT_HTTP", ""), "the broker's HTTP base URL, where it serves the JWKS (env WRIT_HTTP)")
	cmd.Flags().StringVar(&state, "state", "", "directory keeping the pinned key and the witnessed checkpoints")
	cmd.Flags().StringVar(&keyFile, "key", "", "file holding the ledger's verifier key (default: pinned in --state, or fetched once and pinned)")
	return cmd
}

type witness struct {
	base, state string
	out         io.Writer
}

func (w *witness) run(ctx context.Context, keyFile string) error {
	if err := os.MkdirAll(w.state, 0o700); err != nil {
		return fmt.Errorf("--state: %w", err)
	}
	verifier, err := w.key(ctx, keyFile)
	if err != nil {
		return err
	}
	signed, err := w.get(ctx, checkpoint.PathCheckpoint)
	if err != nil {
		return err
	}
	next, err := audit.OpenCheckpoint(signed, verifier)
	if err != nil {
		return fmt.Errorf("%w: the broker's checkpoint: %w", errVerify, err)
	}
	logPath := filepath.Join(w.state, checkpoint.CheckpointsFile)
	prev, ok, err := lastWitnessed(logPath, verifier)
	if err != nil {
		return fmt.Errorf("%w: %w", errVerify, err)
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: refused: the broker's log is not an extension of the witnessed one: witnessed size %d, broker now serves size %d: %s",
			errVerify, prev.Size, next.Size, fmt.Sprintf(format, args...))
	}
	switch {
	case !ok:
		fmt.Fprintf(w.out, "first checkpoint: size %d, root %s\n", next.Size, next.Hash.String())
	case next.Size < prev.Size:
		return refuse("the log shrank (truncated, or restored from an older copy)")
	case next.Size == prev.Size && next.Hash != prev.Hash:
		return refuse("same size, different root (the log was rewritten)")
	case next.Size == prev.Size:
		fmt.Fprintf(w.out, "no new records: size %d, root %s (already witnessed)\n", next.Size, next.Hash.String())
		return nil
	default:
		body, err := w.get(ctx, fmt.Sprintf("%s?old=%d&new=%d", checkpoint.PathConsistency, prev.Size, next.Size))
		if err != nil {
			return err
		}
		proof, err := checkpoint.ParseProof(body)
		if err != nil {
			return refuse("the consistency proof does not parse: %v", err)
		}
		if err := tlog.CheckTree(proof, next.Size, next.Hash, prev.Size, prev.Hash); err != nil {
			return refuse("the consistency proof fails (%v): records up to size %d were changed", err, prev.Size)
		}
		fmt.Fprintf(w.out, "consistent: size %d extends witnessed size %d; root %s\n", next.Size, prev.Size, next.Hash.String())
	}
	return appendSync(logPath, signed)
}

// key returns the verifier to use and pins it in the state directory.
func (w *witness) key(ctx context.Context, keyFile string) (note.Verifier, error) {
	pinnedPath := filepath.Join(w.state, pinnedKeyFile)
	pinned, err := os.ReadFile(pinnedPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var vkey string
	switch {
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("--key: %w", err)
		}
		vkey = strings.TrimSpace(string(b))
		if pinned != nil && strings.TrimSpace(string(pinned)) != vkey {
			return nil, fmt.Errorf("%w: --key %s is not the key pinned in %s; a ledger's key does not change: investigate before replacing the pinned key", errVerify, keyFile, pinnedPath)
		}
	case pinned != nil:
		vkey = strings.TrimSpace(string(pinned))
	default:
		b, err := w.get(ctx, checkpoint.PathKey)
		if err != nil {
			return nil, err
		}
		vkey = strings.TrimSpace(string(b))
		fmt.Fprintf(w.out, "pinned the broker's ledger key %s (trust on first use: compare it with the key the operator published)\n", vkey)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("ledger key %q: %w", vkey, err)
	}
	if pinned == nil {
		if err := os.WriteFile(pinnedPath, []byte(vkey+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("pin ledger key: %w", err)
		}
	}
	return v, nil
}

// get fetches path from the broker's HTTP listener.
func (w *witness) get(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, defaultHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("--broker: %v: %w", err, errUsage)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// lastWitnessed returns the newest checkpoint in the witness's file, each
// note's signature checked. ok is false when the file is absent or empty.
func lastWitnessed(path string, v note.Verifier) (audit.Checkpoint, bool, error) {
	cps, err := readCheckpointFile(path)
	if err != nil || len(cps) == 0 {
		return audit.Checkpoint{}, false, err
	}
	var newest audit.Checkpoint
	for _, sc := range cps {
		c, err := audit.OpenCheckpoint(sc.Note, v)
		if err != nil {
			return audit.Checkpoint{}, false, fmt.Errorf("%s: %w", sc.Source, err)
		}
		if c.Size >= newest.Size {
			newest = c
		}
	}
	return newest, true, nil
}

func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
