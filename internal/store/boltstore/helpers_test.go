package boltstore_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// epoch is the tests' pinned clock origin.
var epoch = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// dbPath returns a fresh database path in a temporary directory.
func dbPath(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "writ.db")
}

// mustOpen opens the store at path and closes it when the test ends.
func mustOpen(tb testing.TB, path string, opts boltstore.Options) *boltstore.Store {
	tb.Helper()
	s, err := boltstore.Open(path, opts)
	if err != nil {
		tb.Fatalf("Open(%s, %+v) err = %v", path, opts, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close() err = %v", err)
		}
	})
	return s
}

// mustClose closes s now (its cleanup will then report an error, so only
// use it on stores not opened by mustOpen).
func mustClose(tb testing.TB, s *boltstore.Store) {
	tb.Helper()
	if err := s.Close(); err != nil {
		tb.Fatalf("Close() err = %v", err)
	}
}

// stepClock returns a clock starting at epoch that advances by a second per
// reading.
func stepClock() func() time.Time {
	var mu sync.Mutex
	t := epoch
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now := t
		t = t.Add(time.Second)
		return now
	}
}

// newLog returns an audit.Log over s with a pinned clock.
func newLog(tb testing.TB, s audit.Store) *audit.Log {
	tb.Helper()
	l, err := audit.New(audit.Config{Store: s, Now: stepClock()})
	if err != nil {
		tb.Fatalf("audit.New() err = %v", err)
	}
	return l
}

// grant returns a typical grant event; i makes it unique.
func grant(i int) audit.Event {
	return audit.Event{
		Action:         "grant",
		Actor:          "spiffe://example.org/ns/prod/sa/api",
		Subject:        "spiffe://example.org/ns/prod/sa/api",
		Entitlement:    "db-readonly",
		Rule:           "auto-prod-readers",
		Outcome:        "allowed",
		Reason:         "eligible",
		GrantID:        fmt.Sprintf("g-%05d", i),
		TTL:            15 * time.Minute,
		CredentialKind: "vault_token",
		CredentialRef:  fmt.Sprintf("accessor-%05d", i),
		Expires:        epoch.Add(15 * time.Minute),
	}
}

// createLedger creates a database at path holding a valid chain of n
// records, written through Store and Log.
func createLedger(tb testing.TB, path string, n int) {
	tb.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		tb.Fatalf("Open() err = %v", err)
	}
	l := newLog(tb, s)
	for i := range n {
		if _, err := l.Append(tb.Context(), grant(i+1)); err != nil {
			tb.Fatalf("Append(#%d) err = %v", i+1, err)
		}
	}
	mustClose(tb, s)
}

// seedLedger creates a database at path holding a valid chain of n records,
// written directly with bbolt in one transaction (fast, for large n).
func seedLedger(tb testing.TB, path string, n int) {
	tb.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		tb.Fatalf("Open() err = %v", err)
	}
	mustClose(tb, s)
	rawUpdate(tb, path, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("ledger"))
		prev := audit.ZeroHash
		for i := range n {
			e := audit.Entry{
				Seq:      uint64(i + 1),
				Time:     epoch.Add(time.Duration(i) * time.Second),
				Event:    grant(i + 1),
				PrevHash: prev,
			}
			e.Hash = e.ComputeHash()
			raw, err := audit.Encode(e)
			if err != nil {
				return err
			}
			if err := b.Put(key(e.Seq), raw); err != nil {
				return err
			}
			prev = e.Hash
		}
		return nil
	})
}

// rawUpdate opens path with bbolt directly (as an attacker with file access
// would) and runs fn in a write transaction.
func rawUpdate(tb testing.TB, path string, fn func(tx *bolt.Tx) error) {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatalf("bolt.Open(%s) err = %v", path, err)
	}
	if err := db.Update(fn); err != nil {
		tb.Fatalf("bolt Update err = %v", err)
	}
	if err := db.Close(); err != nil {
		tb.Fatalf("bolt Close err = %v", err)
	}
}

// key returns the ledger key for seq.
func key(seq uint64) []byte {
	return []byte{byte(seq >> 56), byte(seq >> 48), byte(seq >> 40), byte(seq >> 32), byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq)}
}

// copyFile copies src to a new file dst with mode 0600.
func copyFile(tb testing.TB, src, dst string) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatalf("open %s: %v", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		tb.Fatalf("create %s: %v", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatalf("copy %s: %v", src, err)
	}
	if err := out.Close(); err != nil {
		tb.Fatalf("close %s: %v", dst, err)
	}
}
