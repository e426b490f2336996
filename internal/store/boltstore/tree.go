package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
)

// The ledger's Merkle tree (docs/ledger.md, "Tree"). Bucket ledger_tree
// holds the tree's stored hashes in tlog's layout: key = big-endian uint64
// of tlog.StoredHashIndex, value = the 32-byte hash. Leaf n-1 is
// tlog.RecordHash of record n's stored bytes. putTreeHashes writes a
// record's hashes in the same transaction as the record, so the tree never
// runs ahead of or behind the ledger.

var _ audit.TreeReader = (*Store)(nil)

// migrateChunk is how many records one migration transaction adds to the tree.
const migrateChunk = 4096

// hashKey returns the ledger_tree key of stored hash index i.
func hashKey(i int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

// putTreeHashes adds record seq, whose stored bytes are raw, to the tree in
// tx. The tree must cover exactly records 1..seq-1; otherwise the ledger and
// its tree have come apart and it fails with an error wrapping
// audit.ErrTampered, so the append fails closed.
func putTreeHashes(tx *bolt.Tx, seq uint64, raw []byte) error {
	tb := tx.Bucket(ledgerTreeBucket)
	if tb == nil {
		return fmt.Errorf("bucket %s missing", ledgerTreeBucket)
	}
	n, err := treeSizeOf(tb)
	if err != nil {
		return err
	}
	if uint64(n) != seq-1 {
		return fmt.Errorf("add record %d to the Merkle tree: the tree covers %d records: %w", seq, n, audit.ErrTampered)
	}
	hashes, err := tlog.StoredHashes(n, raw, bucketHashReader{tb})
	if err != nil {
		return fmt.Errorf("add record %d to the Merkle tree: %w", seq, err)
	}
	tb.FillPercent = 1 // keys only ever grow: pack pages full
	first := tlog.StoredHashIndex(0, n)
	for i := range hashes {
		if err := tb.Put(hashKey(first+int64(i)), hashes[i][:]); err != nil {
			return fmt.Errorf("put tree hash %d: %w", first+int64(i), err)
		}
	}
	return nil
}

// treeSizeOf returns the number of records the tree in tb covers, from the
// number of hashes stored (the last key + 1).
func treeSizeOf(tb *bolt.Bucket) (int64, error) {
	k, _ := tb.Cursor().Last()
	if k == nil {
		return 0, nil
	}
	if len(k) != 8 {
		return 0, fmt.Errorf("tree key %x is not 8 bytes: %w", k, audit.ErrTampered)
	}
	count := int64(binary.BigEndian.Uint64(k)) + 1
	n, ok := audit.TreeSizeFromHashCount(count)
	if count <= 0 || !ok {
		return 0, fmt.Errorf("the Merkle tree's %d stored hashes are not a whole tree: %w", count, audit.ErrTampered)
	}
	return n, nil
}

// bucketHashReader reads stored hashes from a ledger_tree bucket.
type bucketHashReader struct{ b *bolt.Bucket }

func (r bucketHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		v := r.b.Get(hashKey(x))
		if len(v) != tlog.HashSize {
			return nil, fmt.Errorf("stored tree hash %d missing or not %d bytes: %w", x, tlog.HashSize, audit.ErrTampered)
		}
		copy(out[i][:], v)
	}
	return out, nil
}

// ReadHashes implements tlog.HashReader (and so audit.TreeReader) over the
// stored tree, in one read transaction.
func (s *Store) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	var out []tlog.Hash
	err := s.view(func(tx *bolt.Tx) error {
		tb := tx.Bucket(ledgerTreeBucket)
		if tb == nil {
			return fmt.Errorf("bucket %s missing", ledgerTreeBucket)
		}
		var err error
		out, err = bucketHashReader{tb}.ReadHashes(indexes)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	return out, nil
}

// TreeSize implements audit.TreeReader: the number of records the stored
// Merkle tree covers, which is the ledger's head sequence number.
func (s *Store) TreeSize(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		tb := tx.Bucket(ledgerTreeBucket)
		if tb == nil {
			return nil // a read-only open of a data dir from before the tree
		}
		var err error
		n, err = treeSizeOf(tb)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read tree size: %w", err)
	}
	return n, nil
}

// migrateTree builds the Merkle tree for ledger records stored before the
// tree existed (a data dir from an older Writ), or that the tree does not
// cover yet, in transactions of migrateChunk records. It runs once at a
// writable Open; with an up-to-date tree it costs one read. A gap in the
// records it needs stops it with an error wrapping audit.ErrTampered.
func migrateTree(db *bolt.DB) error {
	// Most opens find the tree up to date: check that without a write
	// transaction (a write would commit, and fsync, for nothing).
	behind := false
	err := db.View(func(tx *bolt.Tx) error {
		n, err := treeSizeOf(tx.Bucket(ledgerTreeBucket))
		if err != nil {
			return err
		}
		last, _ := tx.Bucket(ledgerBucket).Cursor().Last()
		behind = last != nil && binary.BigEndian.Uint64(last) > uint64(n)
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate ledger tree: %w", err)
	}
	if !behind {
		return nil
	}
	for {
		done := false
		err := db.Update(func(tx *bolt.Tx) error {
			lb, tb := tx.Bucket(ledgerBucket), tx.Bucket(ledgerTreeBucket)
			n, err := treeSizeOf(tb)
			if err != nil {
				return err
			}
			last, _ := lb.Cursor().Last()
			if last == nil || binary.BigEndian.Uint64(last) <= uint64(n) {
				done = true
				return nil
			}
			c := lb.Cursor()
			k, v := c.Seek(seqKey(uint64(n) + 1))
			for i := 0; i < migrateChunk && k != nil; i, n = i+1, n+1 {
				if !bytes.Equal(k, seqKey(uint64(n)+1)) || v == nil {
					return fmt.Errorf("build the Merkle tree: record %d is missing (run writ audit verify): %w", n+1, audit.ErrTampered)
				}
				if err := putTreeHashes(tx, uint64(n)+1, v); err != nil {
					return err
				}
				k, v = c.Next()
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("migrate ledger tree: %w", err)
		}
		if done {
			return nil
		}
	}
}

// PutCheckpoint stores a signed checkpoint note for tree size size in
// bucket ledger_checkpoints (key: big-endian uint64 size). A checkpoint
// already stored for that size is kept: the first one signed wins.
func (s *Store) PutCheckpoint(ctx context.Context, size int64, signed []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(ledgerCheckpointsBucket)
		if b == nil {
			return fmt.Errorf("bucket %s missing", ledgerCheckpointsBucket)
		}
		key := seqKey(uint64(size))
		if b.Get(key) != nil {
			return nil
		}
		b.FillPercent = 1
		return b.Put(key, bytes.Clone(signed))
	})
	if err != nil {
		return fmt.Errorf("store checkpoint %d: %w", size, err)
	}
	return nil
}

// LatestCheckpoint returns the stored checkpoint with the largest tree
// size, or ok=false if none is stored.
func (s *Store) LatestCheckpoint(ctx context.Context) (size int64, signed []byte, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, false, err
	}
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(ledgerCheckpointsBucket)
		if b == nil {
			return nil
		}
		k, v := b.Cursor().Last()
		if k == nil {
			return nil
		}
		if len(k) != 8 {
			return fmt.Errorf("checkpoint key %x is not 8 bytes: %w", k, audit.ErrTampered)
		}
		size, signed, ok = int64(binary.BigEndian.Uint64(k)), bytes.Clone(v), true
		return nil
	})
	if err != nil {
		return 0, nil, false, fmt.Errorf("read latest checkpoint: %w", err)
	}
	return size, signed, ok, nil
}

// Checkpoints calls fn with every stored checkpoint, smallest tree size
// first. fn runs inside a read transaction and may keep signed.
func (s *Store) Checkpoints(ctx context.Context, fn func(size int64, signed []byte) error) error {
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(ledgerCheckpointsBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(k) != 8 || v == nil {
				return fmt.Errorf("checkpoint key %x is not 8 bytes: %w", k, audit.ErrTampered)
			}
			return fn(int64(binary.BigEndian.Uint64(k)), bytes.Clone(v))
		})
	})
}
