package audit

import (
	"context"
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrRange is returned for a tree size, sequence number or proof that the
// stored tree cannot answer: a size of zero, a size larger than the tree,
// a sequence number outside the tree, or an old size larger than the new.
var ErrRange = errors.New("out of the ledger tree's range")

// LeafHash returns the Merkle tree leaf hash of a stored record: the RFC 6962
// leaf hash of its stored bytes (Encode's output, "hash" field included),
// tlog.RecordHash(raw). Record seq n is leaf n-1 of the tree.
func LeafHash(raw []byte) tlog.Hash { return tlog.RecordHash(raw) }

// TreeReader reads a stored Merkle tree: the hashes in tlog's stored hash
// layout (tlog.StoredHashIndex) and how many records the tree covers.
// Stored hashes never change once written (the tree only grows), so a
// reader may answer for any size up to TreeSize at any later time.
type TreeReader interface {
	tlog.HashReader
	// TreeSize returns the number of records the stored tree covers.
	TreeSize(ctx context.Context) (int64, error)
}

// checkSize returns ErrRange unless 1 <= size <= r's tree size.
func checkSize(ctx context.Context, r TreeReader, what string, size int64) error {
	if size < 1 {
		return fmt.Errorf("%s %d: must be at least 1: %w", what, size, ErrRange)
	}
	n, err := r.TreeSize(ctx)
	if err != nil {
		return fmt.Errorf("read tree size: %w", err)
	}
	if size > n {
		return fmt.Errorf("%s %d: the ledger holds %d records: %w", what, size, n, ErrRange)
	}
	return nil
}

// TreeHash returns the root hash of the tree of the first size records
// (1 <= size <= the tree's size).
func TreeHash(ctx context.Context, r TreeReader, size int64) (tlog.Hash, error) {
	if err := checkSize(ctx, r, "tree size", size); err != nil {
		return tlog.Hash{}, err
	}
	h, err := tlog.TreeHash(size, r)
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("tree hash at size %d: %w", size, err)
	}
	return h, nil
}

// InclusionProof returns the proof that record seq (leaf seq-1) is in the
// tree of size records (1 <= seq <= size <= the tree's size). Check it with
// tlog.CheckRecord(proof, size, root, seq-1, LeafHash(raw)).
func InclusionProof(ctx context.Context, r TreeReader, seq, size int64) (tlog.RecordProof, error) {
	if err := checkSize(ctx, r, "size", size); err != nil {
		return nil, err
	}
	if seq < 1 || seq > size {
		return nil, fmt.Errorf("seq %d: must be in 1..%d (the size): %w", seq, size, ErrRange)
	}
	p, err := tlog.ProveRecord(size, seq-1, r)
	if err != nil {
		return nil, fmt.Errorf("inclusion proof of record %d in size %d: %w", seq, size, err)
	}
	return p, nil
}

// ConsistencyProof returns the proof that the tree of size old is a prefix
// of the tree of size new (1 <= old <= new <= the tree's size). Check it with
// tlog.CheckTree(proof, new, newRoot, old, oldRoot).
func ConsistencyProof(ctx context.Context, r TreeReader, old, new int64) (tlog.TreeProof, error) {
	if err := checkSize(ctx, r, "new", new); err != nil {
		return nil, err
	}
	if old < 1 || old > new {
		return nil, fmt.Errorf("old %d: must be in 1..%d (new): %w", old, new, ErrRange)
	}
	p, err := tlog.ProveTree(new, old, r)
	if err != nil {
		return nil, fmt.Errorf("consistency proof from size %d to %d: %w", old, new, err)
	}
	return p, nil
}

// TreeSizeFromHashCount returns the number of records n whose tree stores
// exactly count hashes (tlog.StoredHashCount(n) == count). ok is false when
// no n does: the stored tree is incomplete or damaged.
func TreeSizeFromHashCount(count int64) (n int64, ok bool) {
	if count <= 0 {
		return 0, count == 0
	}
	// StoredHashCount is strictly increasing and StoredHashCount(n) >= n.
	lo, hi := int64(0), count
	for lo < hi {
		mid := lo + (hi-lo)/2
		if tlog.StoredHashCount(mid) < count {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, tlog.StoredHashCount(lo) == count
}

// treeBuilder recomputes a tree from its records in memory, keeping only the
// hashes that later records and tree hashes can need (the roots of the
// complete subtrees on the tree's right edge, at most 63) plus, between
// prunings, at most maxKept others, so that memory stays constant however
// long the ledger. The maths is tlog's.
type treeBuilder struct {
	n      int64
	hashes map[int64]tlog.Hash
}

// maxKept is how many hashes a treeBuilder keeps before it prunes.
const maxKept = 512

func newTreeBuilder() *treeBuilder { return &treeBuilder{hashes: map[int64]tlog.Hash{}} }

// ReadHashes implements tlog.HashReader over the kept hashes.
func (b *treeBuilder) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := b.hashes[x]
		if !ok {
			return nil, fmt.Errorf("tree builder: hash %d not kept", x)
		}
		out[i] = h
	}
	return out, nil
}

// add appends the record with stored bytes raw as leaf b.n.
func (b *treeBuilder) add(raw []byte) error {
	hs, err := tlog.StoredHashes(b.n, raw, b)
	if err != nil {
		return err
	}
	first := tlog.StoredHashIndex(0, b.n)
	for i, h := range hs {
		b.hashes[first+int64(i)] = h
	}
	b.n++
	if len(b.hashes) > maxKept {
		keep := frontier(b.n)
		for x := range b.hashes {
			if !keep[x] {
				delete(b.hashes, x)
			}
		}
	}
	return nil
}

// root returns the tree hash of the records added so far.
func (b *treeBuilder) root() (tlog.Hash, error) { return tlog.TreeHash(b.n, b) }

// frontier returns the stored hash indexes of the maximal complete subtrees
// of a tree of size n, left to right: one per bit set in n.
func frontier(n int64) map[int64]bool {
	out := make(map[int64]bool, bits.OnesCount64(uint64(n)))
	var start int64
	for level := 62; level >= 0; level-- {
		if n&(1<<level) != 0 {
			out[tlog.StoredHashIndex(level, start>>level)] = true
			start += 1 << level
		}
	}
	return out
}
