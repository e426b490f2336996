package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
