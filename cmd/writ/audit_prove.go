package main

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

func auditProveCmd() *cobra.Command {
	var (
		f                    auditFlags
		grant, keyFile, outp string
		seq                  uint64
	)
	cmd := &cobra.Command{
		Use:   "prove --grant ID | --seq N [--key FILE]",
		Short: "Prove that a record is in the ledger: the record, its inclusion proof and the signed checkpoint",
		Long: "prove asks the broker for a record (a grant's first record, or the record with a sequence\n" +
			"number), its RFC 6962 inclusion proof and the newest signed checkpoint, and checks the\n" +
			"proof here: the record's leaf hash leads to the checkpoint's root. With --key (the\n" +
			"ledger's verifier key, GET /.well-known/writ-ledger/key) it also checks the checkpoint's\n" +
			"signature; without it the signature is not checked. Anyone can repeat the check with\n" +
			"golang.org/x/mod/sumdb/tlog.CheckRecord (docs/ledger.md).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (grant == "") == (seq == 0) {
				return fmt.Errorf("give exactly one of --grant and --seq: %w", errUsage)
			}
			var verifier note.Verifier
			if keyFile != "" {
				v, err := readVerifierKey(keyFile)
				if err != nil {
					return err
				}
				verifier = v
			}
			return f.call(cmd, outp, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.ProveRecord(ctx, &adminv1.ProveRecordRequest{GrantId: grant, Seq: seq})
				if err != nil {
					return err
				}
				cp, checked, err := checkProof(resp, verifier)
				if err != nil {
					return fmt.Errorf("%w: %w", errVerify, err)
				}
				return printProof(cmd, outp, resp, cp, checked)
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&grant, "grant", "", "grant ID")
	cmd.Flags().Uint64Var(&seq, "seq", 0, "sequence number")
	cmd.Flags().StringVar(&keyFile, "key", "", "file holding the ledger's verifier key, to check the checkpoint's signature")
	outputFlag(cmd, &outp)
	return cmd
}

// checkProof checks the proof against the checkpoint's root, and the
// checkpoint's signature when verifier is set (signed reports that).
func checkProof(resp *adminv1.ProveRecordResponse, verifier note.Verifier) (cp audit.Checkpoint, signed bool, err error) {
	if verifier != nil {
		if cp, err = audit.OpenCheckpoint(resp.GetCheckpoint(), verifier); err != nil {
			return cp, false, err
		}
		signed = true
	} else {
		text, _, ok := cutNote(resp.GetCheckpoint())
		if !ok {
			return cp, false, fmt.Errorf("the broker's checkpoint is not a signed note")
		}
		if cp, err = audit.ParseCheckpoint(text); err != nil {
			return cp, false, err
		}
	}
	if cp.Size != resp.GetTreeSize() {
		return cp, signed, fmt.Errorf("the checkpoint is for size %d, the proof for %d", cp.Size, resp.GetTreeSize())
	}
	proof := make(tlog.RecordProof, len(resp.GetProof()))
	for i, h := range resp.GetProof() {
		if len(h) != tlog.HashSize {
			return cp, signed, fmt.Errorf("proof hash %d is %d bytes, want %d", i, len(h), tlog.HashSize)
		}
		copy(proof[i][:], h)
	}
	rec := resp.GetRecord()
	if rec.GetSeq() == 0 {
		return cp, signed, fmt.Errorf("the broker sent no record")
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Hash, int64(rec.GetSeq())-1, tlog.RecordHash(rec.GetRecord())); err != nil {
		return cp, signed, fmt.Errorf("record %d is not proven in the tree of size %d: %w", rec.GetSeq(), cp.Size, err)
	}
	return cp, signed, nil
}

// cutNote splits a signed note into its text (through the blank line's
// first newline) and signature lines.
func cutNote(msg []byte) (text, sigs []byte, ok bool) {
	for i := 0; i+1 < len(msg); i++ {
		if msg[i] == '\n' && msg[i+1] == '\n' {
			return msg[:i+1], msg[i+2:], true
		}
	}
	return nil, nil, false
}

func printProof(cmd *cobra.Command, outp string, resp *adminv1.ProveRecordResponse, cp audit.Checkpoint, signed bool) error {
	out := cmd.OutOrStdout()
	var hashes []string
	for _, h := range resp.GetProof() {
		hashes = append(hashes, base64.StdEncoding.EncodeToString(h))
	}
	if outp == "json" {
		return writeJSON(out, map[string]any{
			"seq": resp.GetRecord().GetSeq(), "record": string(resp.GetRecord().GetRecord()), "leaf_index": resp.GetRecord().GetSeq() - 1,
			"tree_size": cp.Size, "root_hash": base64.StdEncoding.EncodeToString(cp.Hash[:]), "proof": hashes,
			"checkpoint": string(resp.GetCheckpoint()), "signature_checked": signed,
		})
	}
	fmt.Fprintf(out, "record %d:\n%s\n\ninclusion proof (leaf %d of %d, %d hashes):\n", resp.GetRecord().GetSeq(), resp.GetRecord().GetRecord(),
		resp.GetRecord().GetSeq()-1, cp.Size, len(hashes))
	for _, h := range hashes {
		fmt.Fprintf(out, "  %s\n", h)
	}
	fmt.Fprintf(out, "\ncheckpoint:\n%s\n", resp.GetCheckpoint())
	if signed {
		fmt.Fprintf(out, "proof ok: record %d is in the tree of size %d, and the checkpoint is signed by %s\n", resp.GetRecord().GetSeq(), cp.Size, cp.Origin)
	} else {
		fmt.Fprintf(out, "proof ok: record %d is in the tree of size %d (checkpoint signature NOT checked: pass --key)\n", resp.GetRecord().GetSeq(), cp.Size)
	}
	return nil
}
