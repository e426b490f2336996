package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// testBroker is a data dir with a ledger, its key, and a witness directory that
// holds the checkpoints taken so far.
type testBroker struct {
	dir, keyFile, witnessDir string
	signer                   note.Signer
}

func newBroker(t *testing.T) *testBroker {
	t.Helper()
	b := &testBroker{dir: t.TempDir(), witnessDir: t.TempDir()}
	signer, vkey, err := checkpoint.LoadOrCreateKey(filepath.Join(b.dir, checkpoint.KeyFile), "", "test/writ-ledger")
	if err != nil {
		t.Fatal(err)
	}
	b.signer = signer
	b.keyFile = filepath.Join(t.TempDir(), "ledger.pub")
	if err := os.WriteFile(b.keyFile, []byte(vkey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *testBroker) open(t *testing.T) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(b.dir, "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// grow appends n records to s, tagged with prefix.
func grow(t *testing.T, s *boltstore.Store, n int, prefix string) {
	t.Helper()
	l, err := audit.New(audit.Config{Store: s, Now: func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(context.Background(), audit.Event{Action: "grant", Actor: "spiffe://td/a", Entitlement: "demo", GrantID: fmt.Sprintf("%s%d", prefix, i), Outcome: "granted"}); err != nil {
			t.Fatal(err)
		}
	}
}

// checkpointNow signs a checkpoint of s's whole tree, stores it and, if
// witnessed, appends it to the witness directory.
func (b *testBroker) checkpointNow(t *testing.T, s *boltstore.Store, witnessed bool) []byte {
	t.Helper()
	size, err := s.TreeSize(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	root, err := audit.TreeHash(t.Context(), s, size)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := audit.SignCheckpoint(audit.Checkpoint{Origin: b.signer.Name(), Size: size, Hash: root}, b.signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutCheckpoint(t.Context(), size, signed); err != nil {
		t.Fatal(err)
	}
	if witnessed {
		w, err := checkpoint.NewDirWitness(b.witnessDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Witness(t.Context(), signed); err != nil {
			t.Fatal(err)
		}
	}
	return signed
}

// tamperDB edits the closed data dir's bbolt file directly, as someone with
// write access to the disk would.
func tamperDB(t *testing.T, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "writ.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func deleteFrom(bucket string, from uint64) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		var keys [][]byte
		_ = b.ForEach(func(k, _ []byte) error {
			if len(k) == 8 && binaryBE(k) >= from {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}
}

func binaryBE(k []byte) uint64 {
	var n uint64
	for _, c := range k {
		n = n<<8 | uint64(c)
	}
	return n
}

// rewriteFrom replaces record seq with one about another grant and
// re-links every later record (new hashes), as a root attacker would; the
// stored tree and stored checkpoints are dropped (the next writable Open
// would rebuild the tree; the verifier recomputes it anyway).
func rewriteFrom(seq uint64) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		lb := tx.Bucket([]byte("ledger"))
		var prev audit.Entry
		c := lb.Cursor()
		type kv struct{ k, v []byte }
		var out []kv
		for k, v := c.First(); k != nil; k, v = c.Next() {
			e, err := audit.Decode(v)
			if err != nil {
				return err
			}
			if e.Seq >= seq {
				if e.Seq == seq {
					e.GrantID = "forged"
				}
				e.PrevHash = prev.Hash
				e.Hash = e.ComputeHash()
				raw, err := audit.Encode(e)
				if err != nil {
					return err
				}
				out = append(out, kv{bytes.Clone(k), raw})
			}
			prev = e
		}
		for _, r := range out {
			if err := lb.Put(r.k, r.v); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket([]byte("ledger_tree")); err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte("ledger_tree")); err != nil {
			return err
		}
		return deleteFrom("ledger_checkpoints", 0)(tx)
	}
}

// T33, T34, T44: the tamper suite. A ledger of 10 records with witnessed
// checkpoints at sizes 4 and 10; each kind of tampering is named at the
// right sequence number (or checkpoint) by writ audit verify, offline.
func TestAuditVerify_TamperSuite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(t *testing.T, b *testBroker)
		want   string // "" means ok
	}{
		{name: "untouched ledger and checkpoints verify"},
		{name: "flip a byte in record 5", want: "first bad record is seq 5", tamper: func(t *testing.T, b *testBroker) {
			tamperDB(t, b.dir, func(tx *bolt.Tx) error {
				lb := tx.Bucket([]byte("ledger"))
				v := bytes.Clone(lb.Get(seqKey(5)))
				v[bytes.Index(v, []byte("g4"))+1] = '9'
				return lb.Put(seqKey(5), v)
			})
		}},
		{name: "delete middle record 5", want: "first bad record is seq 5: missing", tamper: func(t *testing.T, b *testBroker) {
			tamperDB(t, b.dir, func(tx *bolt.Tx) error { return tx.Bucket([]byte("ledger")).Delete(seqKey(5)) })
		}},
		{name: "reorder records 4 and 7", want: "first bad record is seq 4", tamper: func(t *testing.T, b *testBroker) {
			tamperDB(t, b.dir, func(tx *bolt.Tx) error {
				lb := tx.Bucket([]byte("ledger"))
				v4, v7 := bytes.Clone(lb.Get(seqKey(4))), bytes.Clone(lb.Get(seqKey(7)))
				if err := lb.Put(seqKey(4), v7); err != nil {
					return err
				}
				return lb.Put(seqKey(7), v4)
			})
		}},
		{name: "truncate the newest record", want: "first bad record is seq 10: missing: checkpoint", tamper: func(t *testing.T, b *testBroker) {
			tamperDB(t, b.dir, func(tx *bolt.Tx) error {
				if err := deleteFrom("ledger", 10)(tx); err != nil {
					return err
				}
				return deleteFrom("ledger_checkpoints", 10)(tx) // hide the broker's own copy too
			})
		}},
		{name: "truncate the newest 5 records", want: "first bad record is seq 6: missing: checkpoint", tamper: func(t *testing.T, b *testBroker) {
			tamperDB(t, b.dir, func(tx *bolt.Tx) error {
				if err := deleteFrom("ledger", 6)(tx); err != nil {
					return err
				}
				return deleteFrom("ledger_checkpoints", 6)(tx)
			})
		}},
		{name: "change record 7 and recompute every later hash and the tree", want: "first bad record is seq 5: the records' Merkle tree at size 10 does not match checkpoint", tamper: func(t *testing.T, b *testBroker) {
			tamperDB(t, b.dir, rewriteFrom(7))
		}},
		{name: "change record 7, recompute, and re-sign with the stolen ledger key", want: "the log forked", tamper: func(t *testing.T, b *testBroker) {
			tamperDB(t, b.dir, rewriteFrom(7))
			s := b.open(t) // rebuilds the tree from the rewritten records
			b.checkpointNow(t, s, false)
			_ = s.Close()
		}},
		{name: "a forged checkpoint signed with another key", want: "not signed by the ledger key", tamper: func(t *testing.T, b *testBroker) {
			other := newBroker(t)
			s := b.open(t)
			signed, err := audit.SignCheckpoint(audit.Checkpoint{Origin: b.signer.Name(), Size: 10}, other.signer)
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			w, _ := checkpoint.NewDirWitness(b.witnessDir)
			if err := w.Witness(t.Context(), signed); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t)
			s := b.open(t)
			grow(t, s, 4, "g")
			b.checkpointNow(t, s, true)
			growFrom(t, s, 4, 6)
			b.checkpointNow(t, s, true)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				tt.tamper(t, b)
			}
			var out bytes.Buffer
			err := run(context.Background(), []string{"audit", "verify", "--data-dir", b.dir, "--key", b.keyFile, "--checkpoints", b.witnessDir}, &out, &out)
			if tt.want == "" {
				if err != nil || !strings.Contains(out.String(), "ledger ok: 10 records") || !strings.Contains(out.String(), "2 checkpoints verified") {
					t.Fatalf("audit verify = %v, output %q; want ok with 10 records and 2 checkpoints", err, out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != exitError {
				t.Errorf("audit verify = %v (exit %d), output %q; want %q and exit %d", err, exitCode(err), out.String(), tt.want, exitError)
			}
		})
	}
}

// growFrom appends n records whose grant IDs continue from g<from>.
func growFrom(t *testing.T, s *boltstore.Store, from, n int) {
	t.Helper()
	l, err := audit.New(audit.Config{Store: s, Now: func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < from+n; i++ {
		if _, err := l.Append(context.Background(), audit.Event{Action: "grant", Actor: "spiffe://td/a", Entitlement: "demo", GrantID: fmt.Sprintf("g%d", i), Outcome: "granted"}); err != nil {
			t.Fatal(err)
		}
	}
}

// writeExport writes the data dir's records as an export file: one stored
// record per line, byte-identical.
func writeExport(t *testing.T, dir string) string {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var buf bytes.Buffer
	if err := s.ScanRecords(t.Context(), func(_ uint64, raw []byte) error {
		buf.Write(raw)
		buf.WriteByte('\n')
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// T34: an export verifies offline with only the key and the witness's
// checkpoints; edits to the export are named by seq and line.
func TestAuditVerify_Export(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	s := b.open(t)
	grow(t, s, 10, "g")
	b.checkpointNow(t, s, true)
	_ = s.Close()
	export := writeExport(t, b.dir)
	orig, _ := os.ReadFile(export)
	lines := strings.SplitAfter(string(orig), "\n")
	tests := []struct {
		name, content, want string
	}{
		{"untouched export", string(orig), ""},
		{"line 3 deleted", strings.Join(append(append([]string{}, lines[:2]...), lines[3:]...), ""), "first bad record is seq 3: missing"},
		{"newest 5 lines cut", strings.Join(lines[:5], ""), "first bad record is seq 6: missing: checkpoint"},
		{"line 4 is not JSON", strings.Join(lines[:3], "") + "garbage\n" + strings.Join(lines[4:], ""), "first bad record is seq 4: decode entry: malformed ledger record"},
		{"no final newline", strings.TrimSuffix(string(orig), "\n"), "export line 10: no final newline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "export.jsonl")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := run(context.Background(), []string{"audit", "verify", "--export", path, "--key", b.keyFile, "--checkpoints", b.witnessDir}, &out, &out)
			if tt.want == "" {
				if err != nil || !strings.Contains(out.String(), "ledger ok: 10 records") {
					t.Fatalf("audit verify --export = %v, output %q", err, out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("audit verify --export = %v, want %q", err, tt.want)
			}
		})
	}
	var out bytes.Buffer
	path := filepath.Join(t.TempDir(), "export.jsonl")
	_ = os.WriteFile(path, []byte(strings.Join(lines[:3], "")+"garbage\n"+strings.Join(lines[4:], "")), 0o600)
	err := run(context.Background(), []string{"audit", "verify", "--export", path}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "(export line 4)") {
		t.Errorf("malformed export line: err = %v, want it to name export line 4", err)
	}
}

// Empty and one-record ledgers verify; a damaged file is reported, not a
// panic.
func TestAuditVerify_SmallAndDamaged(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1} {
		b := newBroker(t)
		s := b.open(t)
		grow(t, s, n, "g")
		if n > 0 {
			b.checkpointNow(t, s, true)
		}
		_ = s.Close()
		// An empty ledger has no checkpoint: nothing to witness yet.
		cpFlags := []string{"--key", b.keyFile}
		if n > 0 {
			cpFlags = append(cpFlags, "--checkpoints", b.witnessDir)
		}
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"audit", "verify", "--data-dir", b.dir}, cpFlags...), &out, &out)
		if err != nil || !strings.Contains(out.String(), fmt.Sprintf("ledger ok: %d records", n)) {
			t.Errorf("%d records: audit verify = %v, output %q", n, err, out.String())
		}
		export := writeExport(t, b.dir)
		out.Reset()
		err = run(context.Background(), append([]string{"audit", "verify", "--export", export}, cpFlags...), &out, &out)
		if err != nil || !strings.Contains(out.String(), fmt.Sprintf("ledger ok: %d records", n)) {
			t.Errorf("%d records, export: audit verify = %v, output %q", n, err, out.String())
		}
	}

	var out bytes.Buffer
	err := run(context.Background(), []string{"audit", "verify", "--data-dir", t.TempDir(), "--key", newBroker(t).keyFile, "--checkpoints", t.TempDir()}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "checkpoints.log") {
		t.Errorf("--checkpoints DIR without checkpoints.log = %v, want it named", err)
	}

	b := newBroker(t)
	s := b.open(t)
	grow(t, s, 300, "g")
	_ = s.Close()
	path := filepath.Join(b.dir, "writ.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 4 * 4096; i < len(data); i += 4096 { // keep the meta pages, break every page after
		copy(data[i:i+64], bytes.Repeat([]byte{0xff}, 64))
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = run(context.Background(), []string{"audit", "verify", "--data-dir", b.dir}, &out, &out)
	if err == nil || exitCode(err) != exitError {
		t.Errorf("audit verify of a damaged file = %v (exit %d), want a reported error", err, exitCode(err))
	}
	if testing.Verbose() {
		t.Logf("damaged file: %v", err)
	}
}

// brokerHTTP serves the ledger endpoints of the data dir's store, as writd
// does, with the newest stored checkpoint.
func brokerHTTP(t *testing.T, s *boltstore.Store, b *testBroker) *httptest.Server {
	t.Helper()
	vkey, err := audit.VerifierKey(mustRead(t, filepath.Join(b.dir, checkpoint.KeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(checkpoint.Handler(checkpoint.HandlerConfig{
		Tree: s,
		Latest: func() []byte {
			_, signed, _, err := s.LatestCheckpoint(context.Background())
			if err != nil {
				t.Error(err)
			}
			return signed
		},
		VerifierKey: vkey,
	}))
	t.Cleanup(srv.Close)
	return srv
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// T44: writ audit witness accepts extensions and refuses a data dir
// restored from an older copy after it saw a newer checkpoint, and a log
// rewritten from there; verify --checkpoints then names the truncation.
func TestAuditWitness(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	state := t.TempDir()
	witness := func(url string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), []string{"audit", "witness", "--broker", url, "--state", state}, &out, &out)
		return out.String(), err
	}
	s := b.open(t)
	grow(t, s, 5, "g")
	b.checkpointNow(t, s, false)
	srv := brokerHTTP(t, s, b)
	out, err := witness(srv.URL)
	if err != nil || !strings.Contains(out, "pinned the broker's ledger key") || !strings.Contains(out, "first checkpoint: size 5") {
		t.Fatalf("first witness = %v, %q", err, out)
	}
	if out, err = witness(srv.URL); err != nil || !strings.Contains(out, "already witnessed") {
		t.Fatalf("second witness, no change = %v, %q", err, out)
	}
	// An operator keeps a copy of the data dir at size 5.
	old := filepath.Join(t.TempDir(), "writ.db.old")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(b.dir, "writ.db"), old)
	s = b.open(t)
	growFrom(t, s, 5, 7)
	b.checkpointNow(t, s, false)
	srv = brokerHTTP(t, s, b)
	if out, err = witness(srv.URL); err != nil || !strings.Contains(out, "consistent: size 12 extends witnessed size 5") {
		t.Fatalf("witness after growth = %v, %q", err, out)
	}
	_ = s.Close()

	// Restore the whole data dir from the older copy.
	copyFile(t, old, filepath.Join(b.dir, "writ.db"))
	s = b.open(t)
	srv = brokerHTTP(t, s, b)
	out, err = witness(srv.URL)
	if err == nil || exitCode(err) != exitError || !strings.Contains(err.Error(), "witnessed size 12, broker now serves size 5") {
		t.Fatalf("witness after restore = %v (exit %d), %q; want a refusal naming sizes 12 and 5", err, exitCode(err), out)
	}
	// ... and grow it past the witnessed size with other records.
	growFrom(t, s, 100, 9)
	b.checkpointNow(t, s, false)
	out, err = witness(srv.URL)
	if err == nil || !strings.Contains(err.Error(), "witnessed size 12, broker now serves size 14") || !strings.Contains(err.Error(), "consistency proof fails") {
		t.Fatalf("witness after rewrite = %v, %q; want a refusal naming sizes 12 and 14", err, out)
	}
	_ = s.Close()
	var vout bytes.Buffer
	err = run(context.Background(), []string{"audit", "verify", "--data-dir", b.dir, "--key", filepath.Join(state, "ledger.pub"), "--checkpoints", state}, &vout, &vout)
	if err == nil || !strings.Contains(err.Error(), "first bad record is seq 6") {
		t.Errorf("verify of the rewritten data dir against the witness = %v, want seq 6 named", err)
	}

	// A pinned key that differs from --key is refused.
	other := newBroker(t)
	var kout bytes.Buffer
	err = run(context.Background(), []string{"audit", "witness", "--broker", srv.URL, "--state", state, "--key", other.keyFile}, &kout, &kout)
	if err == nil || !strings.Contains(err.Error(), "not the key pinned") {
		t.Errorf("witness with another --key = %v, want refusal", err)
	}
}
