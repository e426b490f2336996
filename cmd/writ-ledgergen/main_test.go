package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// The generated ledger verifies, holds the mix of actions, and -measure
// runs on it.
func TestGenerate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-records", "400", "-out", dir, "-workers", "16", "-batch-delay", "1ms"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "appended 400 records") || !strings.Contains(out.String(), "ledger_tree") {
		t.Errorf("output:\n%s", out.String())
	}
	s, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{ReadOnly: true, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := audit.Verify(t.Context(), s)
	if err != nil || sum.Records != 400 {
		t.Errorf("Verify = %+v, %v", sum, err)
	}
	actions := map[string]int{}
	_ = s.ScanRecords(t.Context(), func(_ uint64, raw []byte) error {
		e, err := audit.Decode(raw)
		actions[e.Action]++
		return err
	})
	_ = s.Close()
	for _, a := range []string{"grant", "deny", "request"} {
		if actions[a] == 0 {
			t.Errorf("no %s records among %v", a, actions)
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"-measure", dir}, &out); err != nil || !strings.Contains(out.String(), "inclusion proof") || !strings.Contains(out.String(), "consistency proof") {
		t.Errorf("-measure = %v:\n%s", err, out.String())
	}
	if err := run(t.Context(), []string{"-records", "1", "-out", dir}, &out); err == nil {
		t.Error("generating into an existing data dir succeeded")
	}
}

// -origin names the new ledger key, so that writd (whose origin comes from
// its configuration) can open the generated data directory.
func TestGenerate_Origin(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	args := []string{"-records", "10", "-out", dir, "-workers", "2", "-batch-delay", "1ms", "-no-summary", "-origin", "writ.dev/writ-ledger"}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "ledger.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pub), "writ.dev/writ-ledger+") {
		t.Errorf("ledger.pub = %q, want the key named writ.dev/writ-ledger", pub)
	}
}

// -tx-records appends through the store's unit of work many records per
// transaction. The ledger it writes verifies against the checkpoint it
// signs, has the expected size, and is the very ledger the one-appender
// Log.Append path writes for the same seed (same records, times and
// Merkle root), so the fast path changes nothing but the commits.
func TestGenerate_TxRecords(t *testing.T) {
	t.Parallel()
	const n = 250
	verify := func(dir string) audit.LogSummary {
		t.Helper()
		pub, err := os.ReadFile(filepath.Join(dir, "ledger.pub"))
		if err != nil {
			t.Fatal(err)
		}
		verifier, err := note.NewVerifier(strings.TrimSpace(string(pub)))
		if err != nil {
			t.Fatal(err)
		}
		s, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{ReadOnly: true, Check: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var cps []audit.SignedCheckpoint
		if err := s.Checkpoints(t.Context(), func(_ int64, signed []byte) error {
			cps = append(cps, audit.SignedCheckpoint{Source: "data dir", Note: signed})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sum, err := audit.VerifyLog(t.Context(), s, verifier, cps)
		if err != nil || sum.Records != n || sum.Newest != n {
			t.Fatalf("VerifyLog(%s) = %+v, %v; want %d records under a checkpoint of that size", dir, sum, err, n)
		}
		return sum
	}
	fast := filepath.Join(t.TempDir(), "fast")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-records", fmt.Sprint(n), "-tx-records", "100", "-out", fast, "-no-summary"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("appended %d records", n)) {
		t.Errorf("output:\n%s", out.String())
	}
	slow := filepath.Join(t.TempDir(), "slow")
	if err := run(t.Context(), []string{"-records", fmt.Sprint(n), "-workers", "1", "-batch-delay", "0", "-out", slow, "-no-summary"}, &out); err != nil {
		t.Fatal(err)
	}
	if f, s := verify(fast), verify(slow); f.Root != s.Root {
		t.Errorf("-tx-records root %s, Log.Append root %s: the two paths wrote different ledgers", f.RootString(), s.RootString())
	}
	if err := run(t.Context(), []string{"-records", "1", "-tx-records", "-1", "-out", filepath.Join(t.TempDir(), "x")}, &out); err == nil {
		t.Error("-tx-records -1 accepted")
	}
}
