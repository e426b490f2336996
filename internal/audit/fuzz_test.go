package audit_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/internal/audit"
)

// goldenRecords returns the records of testdata/chain.golden.
func goldenRecords(tb testing.TB) [][]byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "chain.golden"))
	if err != nil {
		tb.Fatalf("read golden: %v", err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// is canonical: re-encoding gives back the same bytes.
func FuzzDecode(f *testing.F) {
	for _, r := range goldenRecords(f) {
		f.Add(r)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := audit.Decode(data)
		if err != nil {
			if !errors.Is(err, audit.ErrMalformed) {
				t.Fatalf("Decode() err = %v, want ErrMalformed", err)
			}
			return
		}
		raw, err := audit.Encode(e)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)) err = %v", data, err)
		}
		if !bytes.Equal(raw, data) {
			t.Fatalf("Encode(Decode(x)) != x:\n x = %q\ngot %q", data, raw)
		}
		again, err := audit.Decode(raw)
		if err != nil {
			t.Fatalf("Decode(Encode(e)) err = %v", err)
		}
		if diff := cmp.Diff(e, again); diff != "" {
			t.Fatalf("Decode(Encode(e)) != e (-e +again):\n%s", diff)
		}
	})
}

// FuzzVerify checks two things. First, Verify never panics on an arbitrary
// ledger (the golden first record, then data split on newlines into
// records 2..n) and either accepts all n records or returns a *ChainError.
// Second, flipping any bits of any one byte of the valid golden ledger is
// always detected, and blamed on the record holding that byte.
//
// Seeds are kept small: the fuzzer minimizes every input that finds new
// coverage before it counts executions, and large inputs make that slow.
func FuzzVerify(f *testing.F) {
	golden := goldenRecords(f)
	f.Add(golden[1], uint32(0), byte(1))
	f.Add(bytes.Join(golden[1:], []byte("\n")), uint32(len(golden[0])+10), byte(0x80))
	f.Add([]byte("x\ny"), uint32(12345), byte(0x20))
	f.Add([]byte(""), uint32(0), byte(0))
	f.Fuzz(func(t *testing.T, data []byte, pos uint32, mask byte) {
		s := &memStore{recs: []memRecord{{key: 1, raw: golden[0]}}}
		for i, l := range bytes.Split(data, []byte("\n")) {
			s.recs = append(s.recs, memRecord{key: uint64(i + 2), raw: l})
		}
		sum, err := audit.Verify(t.Context(), s)
		if err == nil && sum.Records != uint64(len(s.recs)) {
			t.Fatalf("Verify() = %+v with no error, want %d records", sum, len(s.recs))
		}
		if _, ok := errors.AsType[*audit.ChainError](err); err != nil && !ok {
			t.Fatalf("Verify() err = %v, want *ChainError", err)
		}

		if mask == 0 {
			return
		}
		s = &memStore{}
		var total int
		for i, r := range golden {
			s.recs = append(s.recs, memRecord{key: uint64(i + 1), raw: bytes.Clone(r)})
			total += len(r)
		}
		p := int(pos % uint32(total))
		want := uint64(0)
		for i := range s.recs {
			if p < len(s.recs[i].raw) {
				s.recs[i].raw[p] ^= mask
				want = uint64(i + 1)
				break
			}
			p -= len(s.recs[i].raw)
		}
		_, err = audit.Verify(t.Context(), s)
		ce, ok := errors.AsType[*audit.ChainError](err)
		if !ok || ce.Seq != want {
			t.Fatalf("Verify() after flipping a byte of record %d: err = %v, want *ChainError at %d", want, err, want)
		}
	})
}
