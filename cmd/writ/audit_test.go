package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// newLedger writes a data dir whose ledger holds n grant records.
func newLedger(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(audit.Config{Store: s, Now: func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(context.Background(), audit.Event{Action: "grant", Actor: "spiffe://td/a", Subject: "spiffe://td/a", Entitlement: "demo", GrantID: fmt.Sprintf("g%d", i), Outcome: "granted"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func seqKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// T33 at the command line: each kind of tampering is named at the right
// sequence number and exits non-zero.
func TestAuditVerify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		tamper  func(b *bolt.Bucket) error
		wantSeq int // 0: the ledger verifies
	}{
		{name: "untouched ledger verifies"},
		{name: "one byte flipped in record 5", wantSeq: 5, tamper: func(b *bolt.Bucket) error {
			v := bytes.Clone(b.Get(seqKey(5)))
			i := bytes.Index(v, []byte("g4"))
			v[i+1] = '9'
			return b.Put(seqKey(5), v)
		}},
		{name: "record 5 deleted", wantSeq: 5, tamper: func(b *bolt.Bucket) error { return b.Delete(seqKey(5)) }},
		{name: "records 4 and 7 swapped", wantSeq: 4, tamper: func(b *bolt.Bucket) error {
			v4, v7 := bytes.Clone(b.Get(seqKey(4))), bytes.Clone(b.Get(seqKey(7)))
			if err := b.Put(seqKey(4), v7); err != nil {
				return err
			}
			return b.Put(seqKey(7), v4)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := newLedger(t, 10)
			if tt.tamper != nil {
				db, err := bolt.Open(filepath.Join(dir, "writ.db"), 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(func(tx *bolt.Tx) error { return tt.tamper(tx.Bucket([]byte("ledger"))) }); err != nil {
					t.Fatal(err)
				}
				_ = db.Close()
			}
			var out bytes.Buffer
			err := run(context.Background(), []string{"audit", "verify", "--data-dir", dir}, &out, &out)
			if tt.wantSeq == 0 {
				if err != nil || !strings.Contains(out.String(), "ledger ok: 10 records") {
					t.Fatalf("audit verify = %v, output %q; want ok with 10 records", err, out.String())
				}
				return
			}
			want := fmt.Sprintf("first bad record is seq %d", tt.wantSeq)
			if err == nil || !strings.Contains(err.Error(), want) || exitCode(err) != exitError {
				t.Errorf("audit verify = %v (exit %d), want %q and exit %d", err, exitCode(err), want, exitError)
			}
		})
	}
}

func TestAuditVerify_JSON(t *testing.T) {
	t.Parallel()
	dir := newLedger(t, 3)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"audit", "verify", "--data-dir", dir, "-o", "json"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"ok": true`) || !strings.Contains(out.String(), `"records": 3`) {
		t.Errorf("json output = %s", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"audit", "verify"},
		{"credential", "--broker-id", "spiffe://td/writd", "--svid-dir", "x"},
		{"credential", "--entitlement", "demo", "--svid-dir", "x"},
		{"credential", "--entitlement", "demo", "--broker-id", "spiffe://td/writd", "--svid-dir", "", "--socket", ""},
		{"credential", "--entitlement", "demo", "-o", "yaml"},
	} {
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if exitCode(err) != exitUsage {
			t.Errorf("writ %v = %v (exit %d), want a usage error (exit %d)", args, err, exitCode(err), exitUsage)
		}
	}
}
