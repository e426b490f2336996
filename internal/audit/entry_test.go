package audit_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/internal/audit"
)

var detailsRE = regexp.MustCompile(`"details":\{[^}]*\}`)

var update = flag.Bool("update", false, "rewrite testdata/chain.golden")

// TestCanonical_Golden pins the canonical encoding: the stored bytes of a
// three-entry chain built from sampleEvents with a pinned clock. If this
// fails, the format changed and every existing ledger would stop verifying;
// that needs a new Version, not -update.
func TestCanonical_Golden(t *testing.T) {
	t.Parallel()
	s := newChain(t, 3)
	var got bytes.Buffer
	for _, r := range s.recs {
		got.Write(r.raw)
		got.WriteByte('\n')
	}
	golden := filepath.Join("testdata", "chain.golden")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatalf("write golden: %v", err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if diff := cmp.Diff(string(want), got.String()); diff != "" {
		t.Errorf("canonical encoding drifted from %s (-want +got):\n%s", golden, diff)
	}

	// The golden ledger itself must verify with today's code: this pins the
	// hash function and the field order of Canonical, not just Encode.
	gs := &memStore{}
	for i, line := range bytes.Split(bytes.TrimSuffix(want, []byte("\n")), []byte("\n")) {
		gs.recs = append(gs.recs, memRecord{key: uint64(i + 1), raw: line})
	}
	sum, err := audit.Verify(t.Context(), gs)
	if err != nil {
		t.Fatalf("Verify(golden) err = %v", err)
	}
	if sum.Records != 3 {
		t.Errorf("Verify(golden).Records = %d, want 3", sum.Records)
	}
}

func TestCanonical_ExcludesHash(t *testing.T) {
	t.Parallel()
	s := newChain(t, 1)
	e, err := audit.Decode(s.recs[0].raw)
	if err != nil {
		t.Fatalf("Decode() err = %v", err)
	}
	c := e.Canonical()
	if bytes.Contains(c, []byte(`"hash"`)) {
		t.Errorf("Canonical() = %s, contains hash field", c)
	}
	want := string(c[:len(c)-1]) + `,"hash":"` + e.Hash + `"}`
	if got := string(s.recs[0].raw); got != want {
		t.Errorf("stored record = %s, want canonical + hash = %s", got, want)
	}
	e.Hash = strings.Repeat("f", 64)
	if !bytes.Equal(e.Canonical(), c) {
		t.Errorf("Canonical() depends on Hash")
	}
}

func TestEncodeDecode_RoundTrip(t *testing.T) {
	t.Parallel()
	l, s := newLog(t)
	for i, ev := range sampleEvents() {
		appended, err := l.Append(t.Context(), ev)
		if err != nil {
			t.Fatalf("Append() err = %v", err)
		}
		decoded, err := audit.Decode(s.recs[i].raw)
		if err != nil {
			t.Fatalf("Decode() err = %v", err)
		}
		if diff := cmp.Diff(appended, decoded); diff != "" {
			t.Errorf("Decode(Encode(e)) differs from the appended entry (-appended +decoded):\n%s", diff)
		}
		if decoded.Hash != decoded.ComputeHash() {
			t.Errorf("decoded.Hash = %s, want ComputeHash() = %s", decoded.Hash, decoded.ComputeHash())
		}
	}
}

// validRaw returns the stored bytes of a valid entry 1.
func validRaw(t *testing.T) string {
	t.Helper()
	return string(newChain(t, 1).recs[0].raw)
}

func TestDecode_Strict(t *testing.T) {
	t.Parallel()
	raw := validRaw(t)
	tests := []struct {
		name string
		raw  string
	}{
		{"empty input", ""},
		{"not json", "hello"},
		{"json array", "[]"},
		{"json null", "null"},
		{"unknown field", strings.Replace(raw, `{"v":1,`, `{"v":1,"secret":"x",`, 1)},
		{"missing field", strings.Replace(raw, `"rule":"auto-prod-readers",`, ``, 1)},
		{"duplicate field", strings.Replace(raw, `{"v":1,`, `{"v":1,"v":1,`, 1)},
		{"upper-case field name", strings.Replace(raw, `"seq":`, `"SEQ":`, 1)},
		{"reordered fields", strings.Replace(raw, `{"v":1,"seq":1,`, `{"seq":1,"v":1,`, 1)},
		{"whitespace", strings.Replace(raw, `"seq":1`, `"seq": 1`, 1)},
		{"trailing newline", raw + "\n"},
		{"trailing value", raw + "{}"},
		{"version 2", strings.Replace(raw, `"v":1`, `"v":2`, 1)},
		{"version 0", strings.Replace(raw, `"v":1`, `"v":0`, 1)},
		{"time not UTC", strings.Replace(raw, `"time":"2030-01-01T12:00:00Z"`, `"time":"2030-01-01T13:00:00+01:00"`, 1)},
		{"time with trailing zeros", strings.Replace(raw, `"time":"2030-01-01T12:00:00Z"`, `"time":"2030-01-01T12:00:00.000Z"`, 1)},
		{"time unparsable", strings.Replace(raw, `"time":"2030-01-01T12:00:00Z"`, `"time":"yesterday"`, 1)},
		{"escaped character", strings.Replace(raw, `"action":"grant"`, `"action":"gr\u0061nt"`, 1)},
		{"details null", detailsRE.ReplaceAllString(raw, `"details":null`)},
		{"details empty", detailsRE.ReplaceAllString(raw, `"details":{}`)},
		{"details unsorted", detailsRE.ReplaceAllString(raw, `"details":{"b":"1","a":"2"}`)},
		{"details not strings", detailsRE.ReplaceAllString(raw, `"details":{"a":1}`)},
		{"upper-case hex hash", strings.Replace(raw, `"prev_hash":"0000`, `"prev_hash":"000A`, 1)},
		{"short hash", strings.Replace(raw, `"prev_hash":"0000`, `"prev_hash":"000`, 1)},
		{"invalid UTF-8", strings.Replace(raw, `"action":"grant"`, "\"action\":\"gr\xffnt\"", 1)},
		{"seq negative", strings.Replace(raw, `"seq":1`, `"seq":-1`, 1)},
		{"seq float", strings.Replace(raw, `"seq":1`, `"seq":1.0`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.raw == raw {
				t.Fatalf("test case did not change the record")
			}
			_, err := audit.Decode([]byte(tt.raw))
			if !errors.Is(err, audit.ErrMalformed) {
				t.Errorf("Decode(%q) err = %v, want ErrMalformed", tt.raw, err)
			}
		})
	}
}

func TestEncode_Invalid(t *testing.T) {
	t.Parallel()
	valid := audit.Entry{
		Seq: 1, Time: epoch, Event: audit.Event{Action: "grant"},
		PrevHash: audit.ZeroHash, Hash: audit.ZeroHash,
	}
	if _, err := audit.Encode(valid); err != nil {
		t.Fatalf("Encode(valid) err = %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*audit.Entry)
	}{
		{"invalid UTF-8 in reason", func(e *audit.Entry) { e.Reason = "bad \xff" }},
		{"invalid UTF-8 in details key", func(e *audit.Entry) { e.Details = map[string]string{"\xfe": "v"} }},
		{"invalid UTF-8 in details value", func(e *audit.Entry) { e.Details = map[string]string{"k": "\xfe"} }},
		{"time after year 9999", func(e *audit.Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"expires before year 0", func(e *audit.Entry) { e.Expires = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"empty hash", func(e *audit.Entry) { e.Hash = "" }},
		{"empty prev hash", func(e *audit.Entry) { e.PrevHash = "" }},
		{"upper-case hash", func(e *audit.Entry) { e.Hash = strings.ToUpper(strings.Repeat("ab", 32)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := valid
			tt.mutate(&e)
			if _, err := audit.Encode(e); !errors.Is(err, audit.ErrInvalid) {
				t.Errorf("Encode() err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestCheckNext(t *testing.T) {
	t.Parallel()
	link := func(e audit.Entry) audit.Entry { e.Hash = e.ComputeHash(); return e }
	first := link(audit.Entry{Seq: 1, Time: epoch, Event: audit.Event{Action: "grant"}, PrevHash: audit.ZeroHash})
	second := link(audit.Entry{Seq: 2, Time: epoch, Event: audit.Event{Action: "deny"}, PrevHash: first.Hash})
	tests := []struct {
		name    string
		head    audit.Entry
		ok      bool
		next    audit.Entry
		wantErr error
	}{
		{"first entry on empty ledger", audit.Entry{}, false, first, nil},
		{"second entry after first", first, true, second, nil},
		{"seq 2 on empty ledger", audit.Entry{}, false, second, audit.ErrNotNext},
		{"seq repeats head", first, true, first, audit.ErrNotNext},
		{"skips a seq", first, true, link(audit.Entry{Seq: 3, Time: epoch, PrevHash: first.Hash}), audit.ErrNotNext},
		{"wrong prev hash", first, true, link(audit.Entry{Seq: 2, Time: epoch, PrevHash: audit.ZeroHash}), audit.ErrNotNext},
		{"first entry prev hash not zero", audit.Entry{}, false, link(audit.Entry{Seq: 1, Time: epoch, PrevHash: second.Hash}), audit.ErrNotNext},
		{"stale hash", first, true, func() audit.Entry { e := second; e.Reason = "edited"; return e }(), audit.ErrNotNext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := audit.CheckNext(tt.head, tt.ok, tt.next); !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("CheckNext() err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestEvent_HasNoSecretField guards the rule that the ledger never holds a
// credential: Event has no field that could carry one, and every field has
// a type the canonical encoding knows.
func TestEvent_HasNoSecretField(t *testing.T) {
	t.Parallel()
	allowed := map[reflect.Type]bool{
		reflect.TypeFor[string]():            true,
		reflect.TypeFor[time.Duration]():     true,
		reflect.TypeFor[time.Time]():         true,
		reflect.TypeFor[map[string]string](): true,
	}
	typ := reflect.TypeFor[audit.Event]()
	for f := range typ.Fields() {
		name := strings.ToLower(f.Name)
		for _, bad := range []string{"secret", "token", "password", "key", "private", "credential_value"} {
			if strings.Contains(name, bad) {
				t.Errorf("Event.%s looks like it could hold a secret", f.Name)
			}
		}
		if !allowed[f.Type] {
			t.Errorf("Event.%s has type %v, which the canonical encoding does not cover", f.Name, f.Type)
		}
	}
	if got, want := typ.NumField(), 13; got != want {
		t.Errorf("Event has %d fields, want %d: a new field needs a canonical encoding (and a new Version)", got, want)
	}
}
