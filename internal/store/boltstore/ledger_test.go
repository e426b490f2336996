package boltstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

func TestStore_Append(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s := mustOpen(t, path, boltstore.Options{})
	l := newLog(t, s)
	var appended []audit.Entry
	for i := range 3 {
		e, err := l.Append(t.Context(), grant(i))
		if err != nil {
			t.Fatalf("Append(#%d) err = %v", i, err)
		}
		appended = append(appended, e)
	}
	sum, err := audit.Verify(t.Context(), s)
	if err != nil {
		t.Fatalf("Verify() err = %v", err)
	}
	if want := (audit.Summary{Records: 3, Head: appended[2].Hash}); sum != want {
		t.Errorf("Verify() = %+v, want %+v", sum, want)
	}
	head, ok, err := l.Head(t.Context())
	if err != nil || !ok {
		t.Fatalf("Head() = ok %v, err %v", ok, err)
	}
	if diff := cmp.Diff(appended[2], head); diff != "" {
		t.Errorf("Head() (-appended +head):\n%s", diff)
	}
	var stored []audit.Entry
	err = s.ScanRecords(t.Context(), func(seq uint64, raw []byte) error {
		e, err := audit.Decode(raw)
		stored = append(stored, e)
		return err
	})
	if err != nil {
		t.Fatalf("ScanRecords() err = %v", err)
	}
	if diff := cmp.Diff(appended, stored); diff != "" {
		t.Errorf("stored entries (-appended +stored):\n%s", diff)
	}
}

func TestStore_AppendEntry_Rejects(t *testing.T) {
	t.Parallel()
	errBuild := errors.New("build failed")
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	// link fills in Seq, PrevHash and Hash correctly, then applies edit.
	link := func(edit func(*audit.Entry)) func(audit.Entry, bool) (audit.Entry, error) {
		return func(head audit.Entry, ok bool) (audit.Entry, error) {
			e := audit.Entry{Seq: 1, Time: epoch, Event: grant(9), PrevHash: audit.ZeroHash}
			if ok {
				e.Seq, e.PrevHash = head.Seq+1, head.Hash
			}
			e.Hash = e.ComputeHash()
			edit(&e)
			return e, nil
		}
	}
	tests := []struct {
		name    string
		ctx     context.Context
		build   func(audit.Entry, bool) (audit.Entry, error)
		wantErr error
	}{
		{"build error is returned", t.Context(), func(audit.Entry, bool) (audit.Entry, error) { return audit.Entry{}, errBuild }, errBuild},
		{"seq skips ahead", t.Context(), link(func(e *audit.Entry) { e.Seq++; e.Hash = e.ComputeHash() }), audit.ErrNotNext},
		{"seq repeats head", t.Context(), link(func(e *audit.Entry) { e.Seq--; e.Hash = e.ComputeHash() }), audit.ErrNotNext},
		{"prev hash wrong", t.Context(), link(func(e *audit.Entry) { e.PrevHash = audit.ZeroHash; e.Hash = e.ComputeHash() }), audit.ErrNotNext},
		{"hash stale", t.Context(), link(func(e *audit.Entry) { e.Reason = "edited after hashing" }), audit.ErrNotNext},
		{"unencodable entry", t.Context(), link(func(e *audit.Entry) { e.Reason = "\xff"; e.Hash = e.ComputeHash() }), audit.ErrInvalid},
		{"canceled context", canceled, link(func(*audit.Entry) {}), context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := dbPath(t)
			createLedger(t, path, 2)
			s := mustOpen(t, path, boltstore.Options{})
			before, _, err := s.Head(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.AppendEntry(tt.ctx, tt.build); !errors.Is(err, tt.wantErr) {
				t.Errorf("AppendEntry() err = %v, want %v", err, tt.wantErr)
			}
			sum, err := audit.Verify(t.Context(), s)
			if err != nil || sum.Records != 2 || sum.Head != before.Hash {
				t.Errorf("after failed append: Verify() = %+v, %v; want the 2 original records", sum, err)
			}
		})
	}
}

// TestStore_AppendEntry_DamagedHead checks that appends stop (fail closed)
// when the last stored record cannot be read.
func TestStore_AppendEntry_DamagedHead(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	createLedger(t, path, 3)
	rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket([]byte("ledger")).Put(key(3), []byte("garbage")) })
	s := mustOpen(t, path, boltstore.Options{})
	if _, err := newLog(t, s).Append(t.Context(), grant(4)); !errors.Is(err, audit.ErrTampered) {
		t.Errorf("Append() err = %v, want ErrTampered", err)
	}
	if _, _, err := s.Head(t.Context()); !errors.Is(err, audit.ErrTampered) {
		t.Errorf("Head() err = %v, want ErrTampered", err)
	}
}

func TestStore_ConcurrentAppends(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		appends int
	}{
		{"single grant", 1},
		{"T-spine: 100 concurrent grants", 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := mustOpen(t, dbPath(t), boltstore.Options{})
			l := newLog(t, s)
			entries := make([]audit.Entry, tt.appends)
			var wg sync.WaitGroup
			for i := range tt.appends {
				wg.Go(func() {
					e, err := l.Append(t.Context(), grant(i))
					if err != nil {
						t.Errorf("Append(#%d) err = %v", i, err)
					}
					entries[i] = e
				})
			}
			wg.Wait()

			sum, err := audit.Verify(t.Context(), s)
			if err != nil {
				t.Fatalf("Verify() err = %v", err)
			}
			if sum.Records != uint64(tt.appends) {
				t.Errorf("Verify().Records = %d, want %d", sum.Records, tt.appends)
			}
			var seqs []uint64
			for _, e := range entries {
				seqs = append(seqs, e.Seq)
			}
			slices.Sort(seqs)
			for i, seq := range seqs {
				if seq != uint64(i+1) {
					t.Fatalf("returned seqs = %v, want 1..%d each once", seqs, tt.appends)
				}
			}
			grants := map[string]int{}
			err = s.ScanRecords(t.Context(), func(seq uint64, raw []byte) error {
				e, err := audit.Decode(raw)
				if err != nil {
					return err
				}
				if want := entries[indexOf(t, e.GrantID)]; e.Hash != want.Hash {
					t.Errorf("record %d (%s) hash %s, but Append returned %s", seq, e.GrantID, e.Hash, want.Hash)
				}
				grants[e.GrantID]++
				return nil
			})
			if err != nil {
				t.Fatalf("ScanRecords() err = %v", err)
			}
			for i := range tt.appends {
				if n := grants[grant(i).GrantID]; n != 1 {
					t.Errorf("grant %s recorded %d times, want 1", grant(i).GrantID, n)
				}
			}
		})
	}
}

// indexOf inverts grant(i).GrantID.
func indexOf(t *testing.T, grantID string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(grantID, "g-%05d", &i); err != nil {
		t.Fatalf("grant id %q: %v", grantID, err)
	}
	return i
}

// TestVerify_Tamper is reliability case T33: someone with write access to
// the data dir edits the ledger with bbolt directly. Each case tampers with
// a copy of the same 12-record database and Verify must name the first bad
// record.
func TestVerify_Tamper(t *testing.T) {
	t.Parallel()
	const n = 12
	original := dbPath(t)
	createLedger(t, original, n)

	ledger := func(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket([]byte("ledger")) }
	tests := []struct {
		name        string
		tamper      func(tx *bolt.Tx) error
		wantSeq     uint64 // ChainError.Seq; 0 means Verify passes
		wantRecords uint64
	}{
		{
			name:        "untouched copy verifies",
			tamper:      func(*bolt.Tx) error { return nil },
			wantRecords: n,
		},
		{
			name: "one byte of record 5 flipped",
			tamper: func(tx *bolt.Tx) error {
				v := bytes.Clone(ledger(tx).Get(key(5)))
				v[len(v)/2] ^= 0x01
				return ledger(tx).Put(key(5), v)
			},
			wantSeq:     5,
			wantRecords: 4,
		},
		{
			name: "one byte of record 5's reason flipped",
			tamper: func(tx *bolt.Tx) error {
				v := bytes.Clone(ledger(tx).Get(key(5)))
				i := bytes.Index(v, []byte(`"reason":"`)) + len(`"reason":"`)
				v[i] ^= 0x20 // "eligible" → "Eligible"
				return ledger(tx).Put(key(5), v)
			},
			wantSeq:     5,
			wantRecords: 4,
		},
		{
			name:        "record 5 deleted",
			tamper:      func(tx *bolt.Tx) error { return ledger(tx).Delete(key(5)) },
			wantSeq:     5,
			wantRecords: 4,
		},
		{
			name: "records 4 and 7 swapped",
			tamper: func(tx *bolt.Tx) error {
				v4, v7 := bytes.Clone(ledger(tx).Get(key(4))), bytes.Clone(ledger(tx).Get(key(7)))
				return errors.Join(ledger(tx).Put(key(4), v7), ledger(tx).Put(key(7), v4))
			},
			wantSeq:     4,
			wantRecords: 3,
		},
		{
			// Record 9 is self-consistent after the forger recomputes its
			// hash, so it verifies; the break shows at 10, whose PrevHash
			// still names the original record 9.
			name: "record 9 reason rewritten with its own hash recomputed",
			tamper: func(tx *bolt.Tx) error {
				e, err := audit.Decode(ledger(tx).Get(key(9)))
				if err != nil {
					return err
				}
				e.Reason = "routine, nothing to see"
				e.Hash = e.ComputeHash()
				raw, err := audit.Encode(e)
				if err != nil {
					return err
				}
				return ledger(tx).Put(key(9), raw)
			},
			wantSeq:     10,
			wantRecords: 9,
		},
		{
			name: "record 3 replaced by a copy of record 2",
			tamper: func(tx *bolt.Tx) error {
				return ledger(tx).Put(key(3), bytes.Clone(ledger(tx).Get(key(2))))
			},
			wantSeq:     3,
			wantRecords: 2,
		},
		{
			name:    "record 1 deleted",
			tamper:  func(tx *bolt.Tx) error { return ledger(tx).Delete(key(1)) },
			wantSeq: 1,
		},
		{
			// Truncation is not detectable without an external checkpoint
			// of the head (see package audit's documentation).
			name:        "last record deleted is not detected",
			tamper:      func(tx *bolt.Tx) error { return ledger(tx).Delete(key(n)) },
			wantRecords: n - 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "copy.db")
			copyFile(t, original, path)
			rawUpdate(t, path, tt.tamper)
			s := mustOpen(t, path, boltstore.Options{ReadOnly: true})
			sum, err := audit.Verify(t.Context(), s)
			t.Logf("Verify() = %+v, %v", sum, err)
			if sum.Records != tt.wantRecords {
				t.Errorf("Verify().Records = %d, want %d", sum.Records, tt.wantRecords)
			}
			if tt.wantSeq == 0 {
				if err != nil {
					t.Errorf("Verify() err = %v, want nil", err)
				}
				return
			}
			ce, ok := errors.AsType[*audit.ChainError](err)
			if !ok || ce.Seq != tt.wantSeq {
				t.Errorf("Verify() err = %v, want *ChainError at record %d", err, tt.wantSeq)
			}
			if !errors.Is(err, audit.ErrTampered) {
				t.Errorf("Verify() err = %v, want ErrTampered", err)
			}
		})
	}

	s := mustOpen(t, original, boltstore.Options{ReadOnly: true})
	if sum, err := audit.Verify(t.Context(), s); err != nil || sum.Records != n {
		t.Errorf("original: Verify() = %+v, %v; want %d records", sum, err, n)
	}
}

// TestStore_ScanRecords_Chunks checks that scanning across several read
// transactions sees every record once, in order, and still notices a
// foreign key at a chunk boundary.
func TestStore_ScanRecords_Chunks(t *testing.T) {
	t.Parallel()
	const n = 2500 // > 2 chunks of 1024
	tests := []struct {
		name    string
		tamper  func(tx *bolt.Tx) error
		wantErr error
	}{
		{"valid ledger", nil, nil},
		{
			name: "9-byte key right after the first chunk's last key",
			tamper: func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("ledger")).Put(append(key(1024), 0), []byte("x"))
			},
			wantErr: audit.ErrTampered,
		},
		{
			name: "nested bucket in the ledger",
			tamper: func(tx *bolt.Tx) error {
				_, err := tx.Bucket([]byte("ledger")).CreateBucket([]byte("zzz"))
				return err
			},
			wantErr: audit.ErrTampered,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := dbPath(t)
			seedLedger(t, path, n)
			if tt.tamper != nil {
				rawUpdate(t, path, tt.tamper)
			}
			s := mustOpen(t, path, boltstore.Options{ReadOnly: true})
			var want uint64 = 1
			err := s.ScanRecords(t.Context(), func(seq uint64, _ []byte) error {
				if seq != want {
					return fmt.Errorf("got seq %d, want %d", seq, want)
				}
				want++
				return nil
			})
			if tt.wantErr == nil {
				if err != nil || want != n+1 {
					t.Errorf("ScanRecords() saw %d records, err = %v; want %d, nil", want-1, err, n)
				}
				sum, err := audit.Verify(t.Context(), s)
				if err != nil || sum.Records != n {
					t.Errorf("Verify() = %+v, %v; want %d records", sum, err, n)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ScanRecords() err = %v, want %v", err, tt.wantErr)
			}
			if _, err := audit.Verify(t.Context(), s); !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestStore_ScanRecords_Canceled(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	createLedger(t, path, 5)
	s := mustOpen(t, path, boltstore.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var seen int
	err := s.ScanRecords(ctx, func(uint64, []byte) error {
		seen++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || seen != 1 {
		t.Errorf("ScanRecords() saw %d records, err = %v; want 1, context.Canceled", seen, err)
	}
}

// TestStore_ScanRecords_RawIsACopy checks that fn may keep the bytes it is
// given after the scan (they are not bbolt's mmap).
func TestStore_ScanRecords_RawIsACopy(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	createLedger(t, path, 3)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var kept [][]byte
	if err := s.ScanRecords(t.Context(), func(_ uint64, raw []byte) error {
		kept = append(kept, raw)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustClose(t, s) // unmaps the file
	for i, raw := range kept {
		if _, err := audit.Decode(raw); err != nil {
			t.Errorf("record %d kept after Close: %v", i+1, err)
		}
	}
}
