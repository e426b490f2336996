package audit_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
)

func newKey(t testing.TB, origin string) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := audit.GenerateLedgerKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, skey
}

func TestCheckpoint_SignOpen(t *testing.T) {
	t.Parallel()
	s, v, _ := newKey(t, "writ.example.org/writ-ledger")
	c := audit.Checkpoint{Origin: "writ.example.org/writ-ledger", Size: 42, Hash: tlog.RecordHash([]byte("x"))}
	signed, err := audit.SignCheckpoint(c, s)
	if err != nil {
		t.Fatal(err)
	}
	// The body is the C2SP checkpoint: origin, size, base64 root.
	if want := "writ.example.org/writ-ledger\n42\n" + c.Hash.String() + "\n\n\u2014 writ.example.org/writ-ledger "; !strings.HasPrefix(string(signed), want) {
		t.Fatalf("signed note = %q, want prefix %q", signed, want)
	}
	got, err := audit.OpenCheckpoint(signed, v)
	if err != nil || got != c {
		t.Fatalf("OpenCheckpoint() = %+v, %v; want %+v", got, err, c)
	}
	// The library alone opens it too (third-party verification).
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil || n.Text != string(c.Text()) {
		t.Fatalf("note.Open() = %v, %v", n, err)
	}

	// Forged: same origin, another key.
	s2, _, _ := newKey(t, "writ.example.org/writ-ledger")
	forged, err := audit.SignCheckpoint(c, s2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.OpenCheckpoint(forged, v); !errors.Is(err, audit.ErrBadCheckpoint) || !strings.Contains(err.Error(), "not signed by the ledger key") {
		t.Errorf("OpenCheckpoint(forged) err = %v, want not signed by the ledger key", err)
	}
	// A signature over altered text.
	altered := bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := audit.OpenCheckpoint(altered, v); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("OpenCheckpoint(altered) err = %v, want ErrBadCheckpoint", err)
	}
	// Origin must be the key's name.
	if _, err := audit.SignCheckpoint(audit.Checkpoint{Origin: "other", Size: 1}, s); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Errorf("SignCheckpoint(other origin) err = %v", err)
	}
}

func TestParseCheckpoint_Errors(t *testing.T) {
	t.Parallel()
	good := "o\n1\n" + tlog.Hash{}.String() + "\n"
	if _, err := audit.ParseCheckpoint([]byte(good + "extension line\n")); err != nil {
		t.Errorf("extension lines refused: %v", err)
	}
	for _, tc := range []struct{ text, wantLine string }{
		{"", "line 1"},
		{"o\n1\n", "line 3"},
		{"o\n1\n" + tlog.Hash{}.String(), "line 3"},
		{"\n1\n" + tlog.Hash{}.String() + "\n", "line 1"},
		{"o o\n1\n" + tlog.Hash{}.String() + "\n", "line 1"},
		{"o\n-1\n" + tlog.Hash{}.String() + "\n", "line 2"},
		{"o\n01\n" + tlog.Hash{}.String() + "\n", "line 2"},
		{"o\n1\nAAAA\n", "line 3"},
		{"o\n1\n" + tlog.Hash{}.String() + "=\n", "line 3"},
		{"o\xff\n1\n" + tlog.Hash{}.String() + "\n", "UTF-8"},
	} {
		_, err := audit.ParseCheckpoint([]byte(tc.text))
		if !errors.Is(err, audit.ErrBadCheckpoint) || !strings.Contains(err.Error(), tc.wantLine) {
			t.Errorf("ParseCheckpoint(%q) err = %v, want ErrBadCheckpoint naming %q", tc.text, err, tc.wantLine)
		}
	}
}

func TestSplitNotes(t *testing.T) {
	t.Parallel()
	s, v, _ := newKey(t, "log")
	var file []byte
	for i := range 3 {
		n, err := audit.SignCheckpoint(audit.Checkpoint{Origin: "log", Size: int64(i + 1)}, s)
		if err != nil {
			t.Fatal(err)
		}
		file = append(file, n...)
	}
	notes, err := audit.SplitNotes(file)
	if err != nil || len(notes) != 3 {
		t.Fatalf("SplitNotes() = %d notes, %v; want 3", len(notes), err)
	}
	for i, n := range notes {
		if n.Line != 1+5*i {
			t.Errorf("note %d starts at line %d, want %d", i, n.Line, 1+5*i)
		}
		c, err := audit.OpenCheckpoint(n.Note, v)
		if err != nil || c.Size != int64(i+1) {
			t.Errorf("note %d: %+v, %v", i, c, err)
		}
	}
	if notes, err := audit.SplitNotes(nil); err != nil || len(notes) != 0 {
		t.Errorf("SplitNotes(empty) = %v, %v", notes, err)
	}
	for _, tc := range []struct{ data, wantLine string }{
		{"a\n1\nh\n\n", "line 5"},            // no signature
		{"a\n1\nh\n\nnot a sig\n", "line 5"}, // text where a signature belongs
		{"\na\n", "line 1"},                  // blank line first
		{"a\n1\nh\n\n\u2014 a sig\n\n", "line 6"},
		{"a\n1", "line 2"}, // no final newline
	} {
		_, err := audit.SplitNotes([]byte(tc.data))
		if !errors.Is(err, audit.ErrBadCheckpoint) || !strings.Contains(err.Error(), tc.wantLine) {
			t.Errorf("SplitNotes(%q) err = %v, want naming %q", tc.data, err, tc.wantLine)
		}
	}
}

// VerifierKey derives the key GenerateLedgerKey returned, for many keys
// (base64 key data often holds '+').
func TestVerifierKey(t *testing.T) {
	t.Parallel()
	for range 50 {
		skey, vkey, err := audit.GenerateLedgerKey(rand.Reader, "127.0.0.1:8080/writ-ledger")
		if err != nil {
			t.Fatal(err)
		}
		got, err := audit.VerifierKey(skey)
		if err != nil || got != vkey {
			t.Fatalf("VerifierKey(%q) = %q, %v; want %q", skey, got, err, vkey)
		}
	}
	if _, err := audit.VerifierKey("name+1234+abcd"); err == nil {
		t.Error("VerifierKey(a verifier key) succeeded")
	}
	if _, _, err := audit.GenerateLedgerKey(rand.Reader, "has space"); err == nil {
		t.Error("GenerateLedgerKey(name with space) succeeded")
	}
}
