package audit

import (
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// The in-memory builder, which keeps only the tree's right edge, agrees
// with tlog over a fully stored tree at every size, and keeps few hashes.
func TestTreeBuilder(t *testing.T) {
	t.Parallel()
	var stored []tlog.Hash
	full := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	b := newTreeBuilder()
	for n := range int64(3000) {
		raw := fmt.Appendf(nil, "record %d", n)
		hs, err := tlog.StoredHashes(n, raw, full)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		if err := b.add(raw); err != nil {
			t.Fatalf("add(%d) err = %v", n, err)
		}
		got, err := b.root()
		if err != nil {
			t.Fatalf("root() at size %d err = %v", n+1, err)
		}
		want, _ := tlog.TreeHash(n+1, full)
		if got != want {
			t.Fatalf("root() at size %d = %v, tlog says %v", n+1, got, want)
		}
		if len(b.hashes) > maxKept+64 {
			t.Fatalf("builder keeps %d hashes at size %d", len(b.hashes), n+1)
		}
	}
}

func TestTreeSizeFromHashCount(t *testing.T) {
	t.Parallel()
	for n := range int64(2000) {
		if got, ok := TreeSizeFromHashCount(tlog.StoredHashCount(n)); !ok || got != n {
			t.Fatalf("TreeSizeFromHashCount(StoredHashCount(%d)) = %d, %v", n, got, ok)
		}
		if n > 1 && tlog.StoredHashCount(n)-1 > tlog.StoredHashCount(n-1) {
			if _, ok := TreeSizeFromHashCount(tlog.StoredHashCount(n) - 1); ok {
				t.Fatalf("count %d (a torn tree) accepted", tlog.StoredHashCount(n)-1)
			}
		}
	}
}
