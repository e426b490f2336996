package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// measure times what a broker does with an existing data directory: open
// it (as writd does at start: schema, tree and index checks), prove
// records and tree consistency, look one up by grant, and search by identity.
func measure(ctx context.Context, dir string, w io.Writer) error {
	path := filepath.Join(dir, "writ.db")
	t0 := time.Now()
	store, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	fmt.Fprintf(w, "open (writable, as writd starts): %s\n", time.Since(t0).Round(time.Millisecond))
	size, err := store.TreeSize(ctx)
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	const proofs = 1000
	t0 = time.Now()
	for range proofs {
		seq := 1 + r.Int64N(size)
		p, err := audit.InclusionProof(ctx, store, seq, size)
		if err != nil {
			return err
		}
		root, err := audit.TreeHash(ctx, store, size)
		if err != nil {
			return err
		}
		var raw []byte
		if err := store.ExportRecords(ctx, audit.Query{FromSeq: uint64(seq), ToSeq: uint64(seq)}, func(rec audit.Record) error { raw = rec.Raw; return nil }); err != nil {
			return err
		}
		if err := tlog.CheckRecord(p, size, root, seq-1, tlog.RecordHash(raw)); err != nil {
			return fmt.Errorf("proof of %d: %w", seq, err)
		}
	}
	fmt.Fprintf(w, "inclusion proof + root + record + check, tree size %d: %s each (%d random records)\n", size, (time.Since(t0) / proofs).Round(time.Microsecond), proofs)

	// Consistency proofs from a random older size to the whole tree, as
	// writ audit witness asks for: proof, both roots, tlog.CheckTree.
	newRoot, err := audit.TreeHash(ctx, store, size)
	if err != nil {
		return err
	}
	t0 = time.Now()
	for range proofs {
		old := 1 + r.Int64N(size)
		p, err := audit.ConsistencyProof(ctx, store, old, size)
		if err != nil {
			return err
		}
		oldRoot, err := audit.TreeHash(ctx, store, old)
		if err != nil {
			return err
		}
		if err := tlog.CheckTree(p, size, newRoot, old, oldRoot); err != nil {
			return fmt.Errorf("consistency %d -> %d: %w", old, size, err)
		}
	}
	fmt.Fprintf(w, "consistency proof + old root + check, random old size to %d: %s each (%d proofs)\n", size, (time.Since(t0) / proofs).Round(time.Microsecond), proofs)

	recs, _, err := store.SearchRecords(ctx, audit.Query{Actions: []string{"grant"}}, audit.Page{Limit: 100})
	if err != nil || len(recs) == 0 {
		return fmt.Errorf("no grants to look up: %v", err)
	}
	var grants, who []string
	for _, rec := range recs {
		e, err := audit.Decode(rec.Raw)
		if err != nil {
			return err
		}
		grants, who = append(grants, e.GrantID), append(who, e.Subject)
	}
	t0 = time.Now()
	for _, g := range grants {
		if got, _, err := store.SearchRecords(ctx, audit.Query{GrantID: g}, audit.Page{Limit: 10}); err != nil || len(got) == 0 {
			return fmt.Errorf("grant %s: %d records, %v", g, len(got), err)
		}
	}
	fmt.Fprintf(w, "records of one grant (index): %s each\n", (time.Since(t0) / time.Duration(len(grants))).Round(time.Microsecond))
	t0 = time.Now()
	for _, id := range who[:10] {
		if _, _, err := store.SearchRecords(ctx, audit.Query{Identity: id}, audit.Page{Limit: 100}); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "newest 100 records of one workload (index): %s each\n", (time.Since(t0) / 10).Round(time.Microsecond))
	if err := store.Close(); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %d bytes, %.0f bytes per record\n", filepath.Base(path), fi.Size(), float64(fi.Size())/float64(size))
	return printBuckets(w, path, int(size))
}
