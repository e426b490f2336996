package audit

import (
	"context"
	"errors"
	"fmt"
)

// Summary describes a ledger that Verify checked.
type Summary struct {
	// Records is the number of records that verified.
	Records uint64
	// Head is the Hash of the last record that verified, or "" if none did.
	Head string
}

// ChainError reports the first place where a stored ledger stops being an
// unbroken hash chain. It wraps ErrTampered.
type ChainError struct {
	// Seq is the first sequence number at which the chain fails: the
	// missing record's number for a gap, otherwise the number of the record
	// (the key) that failed a check.
	Seq uint64
	// Reason says which check failed.
	Reason string
}

// Error implements error.
func (e *ChainError) Error() string { return fmt.Sprintf("ledger: record %d: %s", e.Seq, e.Reason) }

// Unwrap returns ErrTampered, so errors.Is(err, ErrTampered) holds.
func (e *ChainError) Unwrap() error { return ErrTampered }

// Verify reads every record of s in key order and checks, for each record
// in turn:
//
//  1. its key is the next sequence number (1 for the first record), else
//     the missing (or out-of-order) number is reported;
//  2. its bytes decode (Decode: exactly the canonical encoding);
//  3. its Seq equals its key;
//  4. its PrevHash is the previous record's Hash (ZeroHash for record 1);
//  5. its Hash is its ComputeHash.
//
// At the first failure it returns a *ChainError wrapping ErrTampered, along
// with a Summary of the records before it. Any other error (from s or ctx)
// is returned wrapped. Verify cannot detect records removed from, or
// rewritten at, the end of the ledger: VerifyLog, with signed checkpoints
// kept elsewhere, does.
func Verify(ctx context.Context, s Scanner) (Summary, error) {
	var (
		sum  Summary
		prev Entry
	)
	err := s.ScanRecords(ctx, func(key uint64, raw []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := sum.Records + 1
		switch {
		case key == want+1:
			return &ChainError{Seq: want, Reason: "missing"}
		case key > want:
			return &ChainError{Seq: want, Reason: fmt.Sprintf("missing (records %d to %d absent)", want, key-1)}
		case key < want:
			return &ChainError{Seq: want, Reason: fmt.Sprintf("key %d out of order (duplicate or reordered key)", key)}
		}
		e, err := Decode(raw)
		if err != nil {
			return &ChainError{Seq: key, Reason: err.Error()}
		}
		if e.Seq != key {
			return &ChainError{Seq: key, Reason: fmt.Sprintf("key %d holds record %d", key, e.Seq)}
		}
		if key == 1 && e.PrevHash != ZeroHash {
			return &ChainError{Seq: key, Reason: "first record's prev_hash is not the zero hash"}
		}
		if key > 1 && e.PrevHash != prev.Hash {
			return &ChainError{Seq: key, Reason: fmt.Sprintf(
				"prev_hash does not match record %d's hash (record %d or %d was altered)", prev.Seq, prev.Seq, key)}
		}
		if e.Hash != e.ComputeHash() {
			return &ChainError{Seq: key, Reason: "hash does not match contents"}
		}
		sum.Records, sum.Head, prev = key, e.Hash, e
		return nil
	})
	if err == nil {
		return sum, nil
	}
	if ce, ok := errors.AsType[*ChainError](err); ok {
		return sum, ce
	}
	return sum, fmt.Errorf("audit: verify: %w", err)
}
