package boltstore_test

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// appendN appends n grant records to s and returns their stored bytes.
func appendN(t *testing.T, s *boltstore.Store, n int) [][]byte {
	t.Helper()
	l := newLog(t, s)
	for i := range n {
		if _, err := l.Append(t.Context(), grant(i)); err != nil {
			t.Fatalf("Append(#%d) err = %v", i, err)
		}
	}
	return storedRaws(t, s)
}

func storedRaws(t *testing.T, s *boltstore.Store) [][]byte {
	t.Helper()
	var raws [][]byte
	if err := s.ScanRecords(t.Context(), func(_ uint64, raw []byte) error {
		raws = append(raws, raw)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return raws
}

// memTree is a reference tree computed by tlog alone from the records.
func memTree(t *testing.T, raws [][]byte) tlog.HashReaderFunc {
	t.Helper()
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for n, raw := range raws {
		hs, err := tlog.StoredHashes(int64(n), raw, r)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	return r
}

// The stored tree is tlog's tree over the records' stored bytes, and the
// proofs it serves pass the library's own verifiers (tlog.CheckRecord,
// tlog.CheckTree), not code under test.
func TestStore_TreeAndProofs(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	if n, err := s.TreeSize(t.Context()); err != nil || n != 0 {
		t.Fatalf("TreeSize() of an empty ledger = %d, %v; want 0", n, err)
	}
	raws := appendN(t, s, 37)
	ref := memTree(t, raws)
	if n, err := s.TreeSize(t.Context()); err != nil || n != 37 {
		t.Fatalf("TreeSize() = %d, %v; want 37", n, err)
	}
	roots := map[int64]tlog.Hash{}
	for size := int64(1); size <= 37; size++ {
		got, err := audit.TreeHash(t.Context(), s, size)
		if err != nil {
			t.Fatalf("TreeHash(%d) err = %v", size, err)
		}
		want, err := tlog.TreeHash(size, ref)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("TreeHash(%d) = %v, tlog over the records says %v", size, got, want)
		}
		roots[size] = got
	}
	for size := int64(1); size <= 37; size++ {
		for seq := int64(1); seq <= size; seq++ {
			p, err := audit.InclusionProof(t.Context(), s, seq, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d) err = %v", seq, size, err)
			}
			if err := tlog.CheckRecord(p, size, roots[size], seq-1, tlog.RecordHash(raws[seq-1])); err != nil {
				t.Fatalf("tlog.CheckRecord(seq %d, size %d) = %v", seq, size, err)
			}
		}
		for old := int64(1); old <= size; old++ {
			p, err := audit.ConsistencyProof(t.Context(), s, old, size)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d) err = %v", old, size, err)
			}
			if err := tlog.CheckTree(p, size, roots[size], old, roots[old]); err != nil {
				t.Fatalf("tlog.CheckTree(%d -> %d) = %v", old, size, err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"tree hash at 0", func() error { _, err := audit.TreeHash(t.Context(), s, 0); return err }},
		{"tree hash beyond the tree", func() error { _, err := audit.TreeHash(t.Context(), s, 38); return err }},
		{"inclusion of seq 0", func() error { _, err := audit.InclusionProof(t.Context(), s, 0, 5); return err }},
		{"inclusion of seq beyond size", func() error { _, err := audit.InclusionProof(t.Context(), s, 6, 5); return err }},
		{"inclusion in size beyond the tree", func() error { _, err := audit.InclusionProof(t.Context(), s, 1, 38); return err }},
		{"consistency old > new", func() error { _, err := audit.ConsistencyProof(t.Context(), s, 6, 5); return err }},
		{"consistency from 0", func() error { _, err := audit.ConsistencyProof(t.Context(), s, 0, 5); return err }},
		{"consistency to beyond the tree", func() error { _, err := audit.ConsistencyProof(t.Context(), s, 1, 40); return err }},
	} {
		if err := tc.call(); !errors.Is(err, audit.ErrRange) {
			t.Errorf("%s: err = %v, want ErrRange", tc.name, err)
		}
	}
}

// A data dir from before the tree (no ledger_tree bucket) gets its tree
// built at the next writable Open; appends then continue the same tree.
func TestStore_TreeMigration(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 10)
	mustClose(t, s)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("ledger_tree")) }); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	ro := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	if n, err := ro.TreeSize(t.Context()); err != nil || n != 0 {
		t.Fatalf("read-only TreeSize() before migration = %d, %v; want 0, nil", n, err)
	}
	mustClose(t, ro)

	s = mustOpen(t, path, boltstore.Options{})
	raws := appendN(t, s, 5) // appendN's log continues the chain
	if len(raws) != 15 {
		t.Fatalf("ledger holds %d records, want 15", len(raws))
	}
	got, err := audit.TreeHash(t.Context(), s, 15)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tlog.TreeHash(15, memTree(t, raws))
	if got != want {
		t.Errorf("tree after migration = %v, want %v", got, want)
	}
}

// A tree that lags the ledger (hashes of the newest record lost) is
// completed at Open; a tree ahead of the ledger (newest record removed
// behind the broker's back) makes appends fail closed.
func TestStore_TreeOutOfStep(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 4)
	mustClose(t, s)
	tamper := func(fn func(tx *bolt.Tx) error) {
		t.Helper()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	tamper(func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte("ledger_tree"))
		for i := tlog.StoredHashIndex(0, 3); i < tlog.StoredHashCount(4); i++ {
			if err := tb.Delete(binary.BigEndian.AppendUint64(nil, uint64(i))); err != nil {
				return err
			}
		}
		return nil
	})
	s = mustOpen(t, path, boltstore.Options{})
	if n, err := s.TreeSize(t.Context()); err != nil || n != 4 {
		t.Fatalf("TreeSize() after reopen = %d, %v; want 4 (completed at Open)", n, err)
	}
	mustClose(t, s)

	tamper(func(tx *bolt.Tx) error {
		lb := tx.Bucket([]byte("ledger"))
		k, _ := lb.Cursor().Last()
		return lb.Delete(k)
	})
	s, err = boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, s)
	_, err = newLog(t, s).Append(t.Context(), grant(99))
	if !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("Append() over a tree ahead of the ledger err = %v, want ErrTampered", err)
	}
}

// Building the tree of an older data dir stops at a missing record: the
// writable Open fails, naming it, rather than build a tree over a gap.
func TestStore_TreeMigrationRefusesGap(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 6)
	mustClose(t, s)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("ledger_tree")); err != nil {
			return err
		}
		return tx.Bucket([]byte("ledger")).Delete(binary.BigEndian.AppendUint64(nil, 3))
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	_, err = boltstore.Open(path, boltstore.Options{})
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "record 3 is missing") {
		t.Fatalf("Open() over a ledger with a gap = %v, want ErrTampered naming record 3", err)
	}
}
