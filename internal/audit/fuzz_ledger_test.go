package audit_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
)

func fuzzVerifier(tb testing.TB) (note.Signer, note.Verifier) {
	tb.Helper()
	// A fixed seed, so that seeds in the corpus keep valid signatures.
	skey, vkey, err := audit.GenerateLedgerKey(bytes.NewReader(make([]byte, 32)), "fuzz/log")
	if err != nil {
		tb.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	return s, v
}

// FuzzCheckpoint: the checkpoint and note parsers never panic, fail with
// ErrBadCheckpoint, and what OpenCheckpoint accepts formats back to the
// signed text.
func FuzzCheckpoint(f *testing.F) {
	s, v := fuzzVerifier(f)
	for _, size := range []int64{0, 1, 1 << 40} {
		signed, err := audit.SignCheckpoint(audit.Checkpoint{Origin: "fuzz/log", Size: size, Hash: tlog.RecordHash([]byte{byte(size)})}, s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(signed)
		f.Add(append(bytes.Clone(signed), signed...))
	}
	f.Add([]byte("fuzz/log\n1\n" + tlog.Hash{}.String() + "\next\n\n\u2014 fuzz/log AAAA\n"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := audit.ParseCheckpoint(data); err == nil {
			if !bytes.HasPrefix(data, c.Text()) {
				t.Fatalf("ParseCheckpoint(%q) = %+v, whose text is not a prefix", data, c)
			}
		} else if !errors.Is(err, audit.ErrBadCheckpoint) {
			t.Fatalf("ParseCheckpoint() err = %v, want ErrBadCheckpoint", err)
		}
		if c, err := audit.OpenCheckpoint(data, v); err == nil {
			n, err := note.Open(data, note.VerifierList(v))
			if err != nil || !strings.HasPrefix(n.Text, string(c.Text())) || c.Origin != "fuzz/log" {
				t.Fatalf("OpenCheckpoint accepted %q as %+v; note.Open = %v", data, c, err)
			}
		} else if !errors.Is(err, audit.ErrBadCheckpoint) {
			t.Fatalf("OpenCheckpoint() err = %v, want ErrBadCheckpoint", err)
		}
		notes, err := audit.SplitNotes(data)
		if err != nil {
			if !errors.Is(err, audit.ErrBadCheckpoint) || !strings.Contains(err.Error(), "line ") {
				t.Fatalf("SplitNotes() err = %v, want ErrBadCheckpoint naming a line", err)
			}
			return
		}
		var joined []byte
		for _, n := range notes {
			joined = append(joined, n.Note...)
		}
		if !bytes.Equal(joined, data) {
			t.Fatalf("SplitNotes(%q) lost bytes: %q", data, joined)
		}
	})
}

// FuzzExport: an export file of any content never panics the scanner or
// VerifyLog; a failure is a ChainError (a record) or names the line.
func FuzzExport(f *testing.F) {
	golden := goldenRecords(f)
	f.Add(append(bytes.Join(golden, []byte("\n")), '\n'))
	f.Add(append(bytes.Join(golden[:1], []byte("\n")), '\n'))
	f.Add([]byte("\n"))
	f.Add([]byte(`{"seq":18446744073709551615}` + "\n"))
	f.Add([]byte(`{"seq":1}` + "\n" + `{"seq":1}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, line := range bytes.Split(data, []byte("\n")) {
			audit.ParseExportSeq(line)
		}
		es := audit.NewExportScanner(bytes.NewReader(data))
		_, err := audit.VerifyLog(t.Context(), es, nil, nil)
		if err == nil {
			return
		}
		if _, ok := errors.AsType[*audit.ChainError](err); ok {
			return
		}
		if !errors.Is(err, audit.ErrExport) || !strings.Contains(err.Error(), "export line ") {
			t.Fatalf("VerifyLog(export) err = %v, want a ChainError or an export line error", err)
		}
	})
}
