package boltstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// mixedEvents is a small ledger of several kinds: grants for two
// workloads, a request with its review and approval, a break-glass use.
func mixedEvents() []audit.Event {
	api, batch, alice := "spiffe://example.org/api", "spiffe://example.org/batch", "oidc:https://idp#alice"
	return []audit.Event{
		{Action: "grant", Actor: api, Subject: api, Entitlement: "orders", GrantID: "g1", CredentialRef: "jti-1", Outcome: "granted"},             // 1
		{Action: "deny", Actor: batch, Subject: batch, Entitlement: "orders", Outcome: "not_eligible"},                                            // 2
		{Action: "request", Actor: alice, Subject: batch, Entitlement: "db", Details: map[string]string{"request_id": "r_1"}, Outcome: "pending"}, // 3
		{Action: "review", Actor: alice, Subject: batch, Entitlement: "db", Details: map[string]string{"request_id": "r_1"}, Outcome: "approve"},  // 4
		{Action: "grant", Actor: batch, Subject: batch, Entitlement: "db", GrantID: "g2", CredentialRef: "jti-2", Outcome: "granted", // 5
			Details: map[string]string{"request_id": "r_1"}},
		{Action: "break_glass", Actor: alice, Subject: api, Entitlement: "orders", GrantID: "g3", CredentialRef: "jti-3", Outcome: "granted", // 6
			Details: map[string]string{"break_glass_id": "bg_1"}},
		{Action: "renew", Actor: api, Subject: api, Entitlement: "orders", GrantID: "g1", CredentialRef: "jti-1", Outcome: "renewed"}, // 7
		{Action: "break_glass_review", Actor: "oidc:https://idp#dave", Subject: api, Entitlement: "orders", GrantID: "g3", Outcome: "justified", // 8
			Details: map[string]string{"break_glass_id": "bg_1"}},
	}
}

func appendAll(t *testing.T, s *boltstore.Store, evs []audit.Event) {
	t.Helper()
	l := newLog(t, s)
	for _, ev := range evs {
		if _, err := l.Append(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func seqsOf(recs []audit.Record) []uint64 {
	out := []uint64{}
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

func TestStore_SearchRecords(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	appendAll(t, s, mixedEvents())
	tests := []struct {
		name string
		q    audit.Query
		p    audit.Page
		want []uint64
	}{
		{"everything, newest first", audit.Query{}, audit.Page{}, []uint64{8, 7, 6, 5, 4, 3, 2, 1}},
		{"everything, oldest first", audit.Query{}, audit.Page{OldestFirst: true}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"identity as actor or subject", audit.Query{Identity: "spiffe://example.org/batch"}, audit.Page{}, []uint64{5, 4, 3, 2}},
		{"person", audit.Query{Identity: "oidc:https://idp#alice"}, audit.Page{OldestFirst: true}, []uint64{3, 4, 6}},
		{"entitlement", audit.Query{Entitlement: "db"}, audit.Page{}, []uint64{5, 4, 3}},
		{"action", audit.Query{Actions: []string{"grant", "renew"}}, audit.Page{}, []uint64{7, 5, 1}},
		{"grant", audit.Query{GrantID: "g1"}, audit.Page{}, []uint64{7, 1}},
		{"request", audit.Query{RefID: "r_1"}, audit.Page{OldestFirst: true}, []uint64{3, 4, 5}},
		{"break-glass", audit.Query{RefID: "bg_1"}, audit.Page{}, []uint64{8, 6}},
		{"identity and action", audit.Query{Identity: "spiffe://example.org/api", Actions: []string{"grant"}}, audit.Page{}, []uint64{1}},
		{"since and until (step clock: seq n at epoch+n-1 s)", audit.Query{Since: epoch.Add(2 * time.Second), Until: epoch.Add(5 * time.Second)}, audit.Page{}, []uint64{5, 4, 3}},
		{"seq range", audit.Query{FromSeq: 3, ToSeq: 5}, audit.Page{}, []uint64{5, 4, 3}},
		{"seq range oldest first", audit.Query{FromSeq: 3, ToSeq: 5}, audit.Page{OldestFirst: true}, []uint64{3, 4, 5}},
		{"unknown identity", audit.Query{Identity: "spiffe://example.org/nobody"}, audit.Page{}, []uint64{}},
		{"unknown grant", audit.Query{GrantID: "g9"}, audit.Page{}, []uint64{}},
		{"prefix of a grant ID is not a match", audit.Query{GrantID: "g"}, audit.Page{}, []uint64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, next, err := s.SearchRecords(t.Context(), tt.q, tt.p)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqsOf(recs); !slices.Equal(got, tt.want) || next != 0 {
				t.Errorf("SearchRecords = %v next %d, want %v next 0", got, next, tt.want)
			}
		})
	}
}

// Paging: every page is the next slice of the full result, in both
// directions, with and without an index.
func TestStore_SearchRecords_Paging(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	evs := mixedEvents()
	for range 3 {
		evs = append(evs, evs...)
	} // 64 records
	appendAll(t, s, evs)
	for _, q := range []audit.Query{{}, {Identity: "spiffe://example.org/api"}, {GrantID: "g1"}, {Actions: []string{"grant"}}} {
		for _, oldest := range []bool{false, true} {
			for _, limit := range []int{1, 3, 7, 100} {
				t.Run(fmt.Sprintf("%+v/oldest=%v/limit=%d", q, oldest, limit), func(t *testing.T) {
					all, _, err := s.SearchRecords(t.Context(), q, audit.Page{Limit: 1000, OldestFirst: oldest})
					if err != nil {
						t.Fatal(err)
					}
					var got []audit.Record
					p := audit.Page{Limit: limit, OldestFirst: oldest}
					for i := 0; ; i++ {
						recs, next, err := s.SearchRecords(t.Context(), q, p)
						if err != nil {
							t.Fatal(err)
						}
						if len(recs) > limit {
							t.Fatalf("page of %d, limit %d", len(recs), limit)
						}
						got = append(got, recs...)
						if next == 0 {
							break
						}
						if i > 100 {
							t.Fatal("paging does not end")
						}
						p.After = next
					}
					if !slices.Equal(seqsOf(got), seqsOf(all)) {
						t.Errorf("pages = %v, want %v", seqsOf(got), seqsOf(all))
					}
				})
			}
		}
	}
}

// Export emits the stored bytes themselves, filtered.
func TestStore_ExportRecords(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s := mustOpen(t, path, boltstore.Options{})
	appendAll(t, s, mixedEvents())
	var stored []audit.Record
	if err := s.ScanRecords(t.Context(), func(seq uint64, raw []byte) error {
		stored = append(stored, audit.Record{Seq: seq, Raw: raw})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    audit.Query
		want []uint64
	}{
		{"all", audit.Query{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"from 6", audit.Query{FromSeq: 6}, []uint64{6, 7, 8}},
		{"2 to 3", audit.Query{FromSeq: 2, ToSeq: 3}, []uint64{2, 3}},
		{"kind", audit.Query{Actions: []string{"break_glass", "break_glass_review"}}, []uint64{6, 8}},
		{"since", audit.Query{Since: epoch.Add(6 * time.Second)}, []uint64{7, 8}},
		{"until", audit.Query{Until: epoch.Add(2 * time.Second)}, []uint64{1, 2}},
		{"past the head", audit.Query{FromSeq: 9}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			err := s.ExportRecords(t.Context(), tt.q, func(r audit.Record) error {
				if !bytes.Equal(r.Raw, stored[r.Seq-1].Raw) {
					t.Errorf("record %d exported as %q, stored as %q", r.Seq, r.Raw, stored[r.Seq-1].Raw)
				}
				got = append(got, r.Seq)
				return nil
			})
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ExportRecords = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// An export without content filters passes damaged records through for the
// verifier; a filtered one stops at them and names the record.
func TestStore_ExportRecords_Damaged(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	createLedger(t, path, 5)
	rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("ledger")).Put(key(3), []byte("garbage")) })
	s := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	n := 0
	if err := s.ExportRecords(t.Context(), audit.Query{}, func(audit.Record) error { n++; return nil }); err != nil || n != 5 {
		t.Errorf("unfiltered export: %d records, %v; want 5, nil", n, err)
	}
	err := s.ExportRecords(t.Context(), audit.Query{Actions: []string{"grant"}}, func(audit.Record) error { return nil })
	if !errors.Is(err, audit.ErrTampered) || !bytes.Contains([]byte(err.Error()), []byte("record 3")) {
		t.Errorf("filtered export err = %v, want ErrTampered naming record 3", err)
	}
}

// Files written before the indexes existed are indexed at a writable Open;
// a read-only open of such a file still searches (by walking the ledger).
func TestStore_IndexMigration(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, mixedEvents())
	mustClose(t, s)
	// Make it an old file: no index buckets, no index version.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		for _, b := range []string{"ledger_by_identity", "ledger_by_entitlement", "ledger_by_ref", "ledger_by_grant"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucket([]byte("ledger_by_grant")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Delete([]byte("ledger_index_version"))
	})
	q := audit.Query{RefID: "bg_1"}
	ro := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	if recs, _, err := ro.SearchRecords(t.Context(), q, audit.Page{}); err != nil || !slices.Equal(seqsOf(recs), []uint64{8, 6}) {
		t.Errorf("read-only search of an unindexed file = %v, %v; want [8 6]", seqsOf(recs), err)
	}
	mustClose(t, ro)

	rw, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if recs, _, err := rw.SearchRecords(t.Context(), q, audit.Page{}); err != nil || !slices.Equal(seqsOf(recs), []uint64{8, 6}) {
		t.Errorf("search after migration = %v, %v; want [8 6]", seqsOf(recs), err)
	}
	if e, ok, err := rw.GrantEntry(t.Context(), "g1"); err != nil || !ok || e.Seq != 7 {
		t.Errorf("GrantEntry(g1) after migration = %d, %v, %v; want 7", e.Seq, ok, err)
	}
	head, _, err := rw.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, rw)

	// A record appended by another tool after indexing is indexed at the
	// next Open.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		e := audit.Entry{Seq: head.Seq + 1, Time: epoch, Event: audit.Event{Action: "grant", GrantID: "g9", Actor: "spiffe://example.org/late"}, PrevHash: head.Hash}
		e.Hash = e.ComputeHash()
		raw, err := audit.Encode(e)
		if err != nil {
			return err
		}
		return tx.Bucket([]byte("ledger")).Put(key(e.Seq), raw)
	})
	rw = mustOpen(t, path, boltstore.Options{})
	if recs, _, err := rw.SearchRecords(t.Context(), audit.Query{GrantID: "g9"}, audit.Page{}); err != nil || !slices.Equal(seqsOf(recs), []uint64{9}) {
		t.Errorf("search for a record added behind the store's back = %v, %v; want [9]", seqsOf(recs), err)
	}
}

// Append-only buckets fill their pages: bytes per record stays well below
// what bbolt's default half-full splits give (T-growth; docs/BENCHMARKS.md).
func TestStore_LedgerPagesFull(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s := mustOpen(t, path, boltstore.Options{})
	l := newLog(t, s)
	for i := range 800 {
		if _, err := l.Append(t.Context(), grant(i)); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, s)
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		st := tx.Bucket([]byte("ledger")).Stats()
		fill := float64(st.LeafInuse) / float64(st.LeafAlloc)
		t.Logf("ledger: %+v", st)
		if fill < 0.9 {
			t.Errorf("ledger leaf pages %.0f%% full, want >= 90%%", 100*fill)
		}
		return nil
	})
}

// T42: a snapshot taken while appends go on is a consistent file whose
// ledger verifies; the copy is a prefix of the live ledger.
func TestStore_WriteSnapshot_UnderLoad(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	l := newLog(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := l.Append(context.Background(), grant(w*100000+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	dir := t.TempDir()
	for i := range 3 {
		// Let some appends land between snapshots.
		for n := uint64(0); n < uint64(50*(i+1)); {
			e, _, err := s.Head(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			n = e.Seq
		}
		out := filepath.Join(dir, fmt.Sprintf("snap%d.db", i))
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteSnapshot(t.Context(), f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		snap := mustOpen(t, out, boltstore.Options{ReadOnly: true})
		sum, err := audit.Verify(t.Context(), snap)
		if err != nil || sum.Records == 0 {
			t.Errorf("snapshot %d: Verify = %+v, %v; want a verified non-empty ledger", i, sum, err)
		}
	}
	cancel()
	wg.Wait()
}

// T42: a damaged file (truncated, garbage, a page overwritten) is reported
// with an error, never a panic or a fault.
func TestStore_DamagedFileReported(t *testing.T) {
	t.Parallel()
	src := dbPath(t)
	seedLedger(t, src, 3000)
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		damage  func([]byte) []byte
		content bool // reaches page contents: not under -race (see raceEnabled)
	}{
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, false},
		{"truncated to 3 pages", func(b []byte) []byte { return b[:3*16384] }, false},
		{"empty", func([]byte) []byte { return nil }, false},
		{"garbage", func(b []byte) []byte { return bytes.Repeat([]byte{0xa5}, len(b)) }, false},
		{"pages after the meta pages zeroed", func(b []byte) []byte {
			b = bytes.Clone(b)
			clear(b[2*16384 : len(b)/2])
			return b
		}, true},
		{"pages after the meta pages scribbled", func(b []byte) []byte {
			b = bytes.Clone(b)
			for i := 2 * 4096; i < len(b); i += 97 {
				b[i] ^= 0x5a
			}
			return b
		}, true},
	}
	for _, tt := range tests {
		if tt.content && raceEnabled {
			t.Logf("%s: runs without -race only", tt.name)
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "writ.db")
			if err := os.WriteFile(path, tt.damage(good), 0o600); err != nil {
				t.Fatal(err)
			}
			if s, err := boltstore.Open(path, boltstore.Options{ReadOnly: true, Check: true}); err == nil {
				_ = s.Close()
				t.Errorf("Open with Check accepted the damaged file")
			} else if !errors.Is(err, boltstore.ErrDamaged) && !strings.Contains(err.Error(), "invalid database") {
				t.Errorf("Open with Check: %v, want ErrDamaged", err)
			}
			s, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
			if err != nil {
				t.Logf("open: %v", err)
				return // reported at Open
			}
			defer s.Close()
			_, verr := audit.Verify(t.Context(), s)
			eerr := s.ExportRecords(t.Context(), audit.Query{Actions: []string{"grant"}}, func(audit.Record) error { return nil })
			_, _, serr := s.SearchRecords(t.Context(), audit.Query{Identity: "spiffe://example.org/ns/prod/sa/api"}, audit.Page{Limit: 5000})
			t.Logf("verify: %v\nexport: %v\nsearch: %v", verr, eerr, serr)
			if verr == nil && eerr == nil && serr == nil {
				t.Errorf("damaged file read without any error")
			}
		})
	}
}

// DropPrefix removes records and their index entries, keeps the tree, and
// refuses what no checkpoint covers or the head.
func TestStore_DropPrefix(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	appendAll(t, s, mixedEvents())
	if err := s.DropPrefix(t.Context(), 3); !errors.Is(err, boltstore.ErrNotCovered) {
		t.Fatalf("DropPrefix without a checkpoint = %v, want ErrNotCovered", err)
	}
	if err := s.PutCheckpoint(t.Context(), 8, []byte("signed\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.DropPrefix(t.Context(), 8); !errors.Is(err, boltstore.ErrNotCovered) {
		t.Fatalf("DropPrefix of the head = %v, want ErrNotCovered", err)
	}
	if err := s.DropPrefix(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ArchivedThrough(t.Context()); n != 5 || err != nil {
		t.Errorf("ArchivedThrough = %d, %v; want 5", n, err)
	}
	for _, tt := range []struct {
		q    audit.Query
		want []uint64
	}{
		{audit.Query{}, []uint64{8, 7, 6}},
		{audit.Query{GrantID: "g1"}, []uint64{7}},
		{audit.Query{GrantID: "g2"}, []uint64{}},
		{audit.Query{RefID: "r_1"}, []uint64{}},
		{audit.Query{Identity: "spiffe://example.org/api"}, []uint64{8, 7, 6}},
		{audit.Query{Entitlement: "db"}, []uint64{}},
	} {
		recs, _, err := s.SearchRecords(t.Context(), tt.q, audit.Page{})
		if err != nil || !slices.Equal(seqsOf(recs), tt.want) {
			t.Errorf("SearchRecords(%+v) after DropPrefix = %v, %v; want %v", tt.q, seqsOf(recs), err, tt.want)
		}
	}
	if _, ok, err := s.GrantEntry(t.Context(), "g2"); ok || err != nil {
		t.Errorf("GrantEntry(g2) = %v, %v; want not found", ok, err)
	}
	if n, err := s.TreeSize(t.Context()); n != 8 || err != nil {
		t.Errorf("TreeSize = %d, %v; want 8 (hashes kept)", n, err)
	}
	appendAll(t, s, mixedEvents()[:1]) // appends go on from the head
	if h, _, _ := s.Head(t.Context()); h.Seq != 9 {
		t.Errorf("head after append = %d, want 9", h.Seq)
	}
}
