package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// archiveDir is a stopped broker's data dir: n grant records, a signed
// checkpoint at size n (unless n is 0), and the verifier key in ledger.pub.
func archiveDir(t *testing.T, n int) (dir, keyFile string, signer note.Signer) {
	t.Helper()
	dir = t.TempDir()
	skey, vkey, err := audit.GenerateLedgerKey(rand.Reader, "writ.test/ledger")
	if err != nil {
		t.Fatal(err)
	}
	if signer, err = note.NewSigner(skey); err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(dir, "ledger.pub")
	if err := os.WriteFile(keyFile, []byte(vkey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	appendAndSign(t, dir, signer, 0, n)
	return dir, keyFile, signer
}

// appendAndSign appends n grants numbered from first and signs a checkpoint.
func appendAndSign(t *testing.T, dir string, signer note.Signer, first, n int) {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := audit.New(audit.Config{Store: s, Now: func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := first; i < first+n; i++ {
		who := fmt.Sprintf("spiffe://td/app%d", i%3)
		if _, err := l.Append(t.Context(), audit.Event{Action: "grant", Actor: who, Subject: who, Entitlement: "demo", GrantID: fmt.Sprintf("g%d", i), CredentialRef: fmt.Sprintf("jti%d", i), Outcome: "granted"}); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := checkpoint.New(t.Context(), checkpoint.Config{Store: s, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.SignNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := cp.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func storedRecords(t *testing.T, dir string) map[uint64][]byte {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[uint64][]byte{}
	if err := s.ScanRecords(t.Context(), func(seq uint64, raw []byte) error { out[seq] = raw; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func writCLI(args ...string) (string, error) {
	var out bytes.Buffer
	err := run(context.Background(), args, &out, &out)
	return out.String(), err
}

// Retention: archive a prefix covered by a signed checkpoint; the live
// store keeps the tree, so proofs and later checkpoints still verify; the
// archives plus the live store verify offline; a second archive continues
// the first.
func TestAdminArchive(t *testing.T) {
	t.Parallel()
	dir, keyFile, signer := archiveDir(t, 50)
	before := storedRecords(t, dir)
	arch1 := filepath.Join(t.TempDir(), "ledger-1-30.jsonl")

	out, err := writCLI("admin", "archive", "--data-dir", dir, "--before-seq", "31", "--out", arch1, "--key", keyFile)
	if err != nil || !strings.Contains(out, "archived records 1 to 30 (30)") {
		t.Fatalf("archive = %v:\n%s", err, out)
	}
	got, err := os.ReadFile(arch1)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for seq := uint64(1); seq <= 30; seq++ {
		want.Write(before[seq])
		want.WriteByte('\n')
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("archive is not records 1..30 as stored")
	}
	if fi, _ := os.Stat(arch1); fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600", fi.Mode().Perm())
	}
	live := storedRecords(t, dir)
	if _, ok := live[30]; ok || len(live) != 21 { // 31..50 and the archive record
		t.Errorf("live ledger holds %d records (30 present: %v), want 31..51", len(live), ok)
	}

	// Without the archive, verify says what is missing; with it, the whole
	// history verifies against the signed checkpoint.
	if _, err := writCLI("audit", "verify", "--data-dir", dir, "--key", keyFile); err == nil || !strings.Contains(err.Error(), "--archive") {
		t.Errorf("verify without the archive = %v, want a hint to pass --archive", err)
	}
	if out, err := writCLI("audit", "verify", "--data-dir", dir, "--key", keyFile, "--archive", arch1); err != nil {
		t.Errorf("verify with the archive = %v:\n%s", err, out)
	}

	// The tree is intact: an inclusion proof of a live record and a
	// consistency proof from the old checkpoint to a new one, checked by
	// tlog.
	appendAndSign(t, dir, signer, 100, 10)
	s, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	size, err := s.TreeSize(t.Context())
	if err != nil || size != 61 {
		t.Fatalf("tree size %d, %v; want 61", size, err)
	}
	root, _ := audit.TreeHash(t.Context(), s, size)
	oldRoot, _ := audit.TreeHash(t.Context(), s, 50)
	ip, err := audit.InclusionProof(t.Context(), s, 40, size)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckRecord(ip, size, root, 39, tlog.RecordHash(before[40])); err != nil {
		t.Errorf("inclusion proof of record 40 after archiving: %v", err)
	}
	if err := tlog.CheckRecord(mustProve(t, s, 5, size), size, root, 4, tlog.RecordHash(before[5])); err != nil {
		t.Errorf("inclusion proof of archived record 5: %v", err)
	}
	tp, err := audit.ConsistencyProof(t.Context(), s, 50, size)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, size, root, 50, oldRoot); err != nil {
		t.Errorf("consistency proof 50 -> %d after archiving: %v", size, err)
	}
	_ = s.Close()

	// A second archive continues the first.
	arch2 := filepath.Join(t.TempDir(), "ledger-31-55.jsonl")
	if out, err := writCLI("admin", "archive", "--data-dir", dir, "--before-seq", "56", "--out", arch2); err != nil || !strings.Contains(out, "archived records 31 to 55") {
		t.Fatalf("second archive = %v:\n%s", err, out)
	}
	if out, err := writCLI("audit", "verify", "--data-dir", dir, "--key", keyFile, "--archive", arch1, "--archive", arch2); err != nil {
		t.Errorf("verify with both archives = %v:\n%s", err, out)
	}
	// A tampered archive is caught.
	bad := bytes.Replace(got, []byte(`"g7"`), []byte(`"g8"`), 1)
	badFile := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(badFile, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := writCLI("audit", "verify", "--data-dir", dir, "--key", keyFile, "--archive", badFile, "--archive", arch2); err == nil {
		t.Error("verify with a tampered archive succeeded")
	}
}

func mustProve(t *testing.T, s *boltstore.Store, seq, size int64) tlog.RecordProof {
	t.Helper()
	p, err := audit.InclusionProof(t.Context(), s, seq, size)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Archiving refuses what no signed checkpoint covers, the head, and a
// running broker's data dir; nothing is dropped.
func TestAdminArchive_Refusals(t *testing.T) {
	t.Parallel()
	dir, _, signer := archiveDir(t, 20)
	appendAndSign(t, dir, signer, 20, 0) // no-op sign: size 20 already signed
	s, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := audit.New(audit.Config{Store: s})
	for range 5 { // 21..25: not covered
		if _, err := l.Append(t.Context(), audit.Event{Action: "deny"}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "a.jsonl")
	if _, err := writCLI("admin", "archive", "--data-dir", dir, "--before-seq", "10", "--out", out); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("archive of a data dir in use = %v, want a refusal", err)
	}
	_ = s.Close()
	for _, before := range []string{"23", "26", "100"} {
		if _, err := writCLI("admin", "archive", "--data-dir", dir, "--before-seq", before, "--out", out); err == nil {
			t.Errorf("archive --before-seq %s succeeded; records 21.. are not covered by a checkpoint", before)
		}
	}
	if n := len(storedRecords(t, dir)); n != 25 {
		t.Errorf("live ledger has %d records after refusals, want 25", n)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused archive left a file")
	}
}
