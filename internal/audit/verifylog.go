package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// SignedCheckpoint is a signed checkpoint note to check and where it came
// from, for messages ("witness file line 12", "data dir").
type SignedCheckpoint struct {
	Source string
	Note   []byte
}

// CheckpointError reports a checkpoint that is bad on its own (its
// signature or format) or that contradicts another checkpoint. It wraps
// ErrBadCheckpoint.
type CheckpointError struct {
	// Source says where the checkpoint came from.
	Source string
	// Reason says what is wrong.
	Reason string
}

// Error implements error.
func (e *CheckpointError) Error() string {
	return fmt.Sprintf("checkpoint %s: %s", e.Source, e.Reason)
}

// Unwrap returns ErrBadCheckpoint.
func (e *CheckpointError) Unwrap() error { return ErrBadCheckpoint }

// LogSummary describes a ledger that VerifyLog checked.
type LogSummary struct {
	Summary
	// Root is the recomputed Merkle tree root of the Records that verified.
	Root tlog.Hash
	// Checkpoints is how many distinct checkpoints (by size) were checked.
	Checkpoints int
	// Newest is the largest tree size among the checkpoints (0: none).
	Newest int64
}

// RootString returns the root hash in standard base64, as checkpoints
// write it.
func (s LogSummary) RootString() string { return base64.StdEncoding.EncodeToString(s.Root[:]) }

// VerifyLog does what Verify does and more: it recomputes the Merkle tree
// from the records' stored bytes, opens every checkpoint with verifier
// (signature by the ledger key, origin = key name), and checks that the
// recomputed tree has each checkpoint's root at its size. So a record
// changed and every later hash and the stored tree recomputed is caught by
// any checkpoint taken after it, and records removed from the end are
// caught by any checkpoint that covered them (truncation). It needs no
// network and trusts nothing stored besides the records themselves.
//
// It returns a *CheckpointError for a checkpoint that fails on its own or
// contradicts another one of the same size, and a *ChainError naming the
// first bad (or, for a changed tree, the first possibly bad) sequence
// number otherwise. verifier may be nil when checkpoints is empty.
func VerifyLog(ctx context.Context, s Scanner, verifier note.Verifier, checkpoints []SignedCheckpoint) (LogSummary, error) {
	type cp struct {
		Checkpoint
		source string
	}
	bySize := map[int64]cp{}
	for _, sc := range checkpoints {
		if verifier == nil {
			return LogSummary{}, errors.New("audit: verify: checkpoints given without the ledger's key")
		}
		c, err := OpenCheckpoint(sc.Note, verifier)
		if err != nil {
			return LogSummary{}, &CheckpointError{Source: sc.Source, Reason: err.Error()}
		}
		if prev, ok := bySize[c.Size]; ok && prev.Hash != c.Hash {
			return LogSummary{}, &CheckpointError{Source: sc.Source, Reason: fmt.Sprintf(
				"size %d has root %s, but checkpoint %s has root %s for the same size: the log forked",
				c.Size, b64(c.Hash), prev.source, b64(prev.Hash))}
		}
		bySize[c.Size] = cp{c, sc.Source}
	}
	sizes := slices.Sorted(func(yield func(int64) bool) {
		for n := range bySize {
			if !yield(n) {
				return
			}
		}
	})

	var (
		sum     LogSummary
		b       = newTreeBuilder()
		next    = 0        // index in sizes of the next checkpoint to meet
		matched = int64(0) // largest checkpointed size that matched
	)
	check := func() error {
		for next < len(sizes) && sizes[next] == b.n {
			c := bySize[sizes[next]]
			root, err := b.root()
			if err != nil {
				return err
			}
			if root != c.Hash {
				return &ChainError{Seq: uint64(matched) + 1, Reason: fmt.Sprintf(
					"the records' Merkle tree at size %d does not match checkpoint %s (root %s, recomputed %s): a record in %d..%d was changed, removed or replaced",
					c.Size, c.source, b64(c.Hash), b64(root), matched+1, c.Size)}
			}
			matched = c.Size
			next++
		}
		return nil
	}
	if err := check(); err != nil { // a checkpoint of the empty tree
		return sum, err
	}
	tee := scannerFunc(func(ctx context.Context, fn func(uint64, []byte) error) error {
		return s.ScanRecords(ctx, func(seq uint64, raw []byte) error {
			if err := fn(seq, raw); err != nil {
				return err
			}
			if err := b.add(raw); err != nil {
				return fmt.Errorf("recompute tree: %w", err)
			}
			return check()
		})
	})
	chain, err := Verify(ctx, tee)
	sum.Summary = chain
	if err != nil {
		return sum, err
	}
	if sum.Root, err = b.root(); err != nil {
		return sum, fmt.Errorf("audit: verify: %w", err)
	}
	sum.Checkpoints = len(sizes)
	if len(sizes) > 0 {
		sum.Newest = sizes[len(sizes)-1]
	}
	if next < len(sizes) {
		c := bySize[sizes[len(sizes)-1]]
		return sum, &ChainError{Seq: chain.Records + 1, Reason: fmt.Sprintf(
			"missing: checkpoint %s covers %d records but the ledger ends at %d (truncated)", c.source, c.Size, chain.Records)}
	}
	return sum, nil
}

func b64(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

// scannerFunc adapts a function to Scanner.
type scannerFunc func(ctx context.Context, fn func(uint64, []byte) error) error

func (f scannerFunc) ScanRecords(ctx context.Context, fn func(uint64, []byte) error) error {
	return f(ctx, fn)
}
