package textsafe_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/writ-dev/writ/internal/textsafe"
)

// T43: identifiers and free text carrying ANSI escapes, newlines and bidi
// controls.
func TestIdentifierAndFreeText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		in           string
		wantIDOK     bool
		wantFreeOK   bool
		wantMentions string // an escaped form the error must show
	}{
		{"plain ASCII", "alice@example.org", true, true, ""},
		{"SPIFFE ID", "spiffe://example.org/ns/prod/sa/api", true, true, ""},
		{"non-Latin letters", "Zoë 山田", true, true, ""},
		{"space", "INC 42", true, true, ""},
		{"ANSI escape", "alice\x1b[2J", false, false, `\x1b`},
		{"newline", "fix outage\nstate: approved", false, true, `\n`},
		{"carriage return", "ok\rAPPROVED", false, false, `\r`},
		{"tab", "a\tb", false, false, `\t`},
		{"NUL", "a\x00b", false, false, `\x00`},
		{"DEL", "a\x7fb", false, false, `\x7f`},
		{"C1 CSI", "a\u009bb", false, false, `\u009b`},
		{"bidi RLO U+202E", "txt\u202egpj.exe", false, false, `\u202e`},
		{"bidi isolate U+2066", "a\u2066b", false, false, `\u2066`},
		{"bidi PDI U+2069", "a\u2069b", false, false, `\u2069`},
		{"zero-width space", "ad\u200bmin", false, false, `\u200b`},
		{"zero-width joiner", "a\u200db", false, false, `\u200d`},
		{"byte order mark", "\ufeffalice", false, false, `\ufeff`},
		{"soft hyphen", "ad\u00admin", false, false, `\u00ad`},
		{"tag character", "a\U000E0041", false, false, `\U000e0041`},
		{"line separator", "a\u2028b", false, false, `\u2028`},
		{"paragraph separator", "a\u2029b", false, false, `\u2029`},
		{"invalid UTF-8", "a\xffb", false, false, "invalid UTF-8"},
		{"truncated UTF-8", "a\xe2\x80", false, false, "invalid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range []struct {
				fn     func(string) error
				name   string
				wantOK bool
			}{{textsafe.Identifier, "Identifier", tt.wantIDOK}, {textsafe.FreeText, "FreeText", tt.wantFreeOK}} {
				err := c.fn(tt.in)
				if (err == nil) != c.wantOK {
					t.Fatalf("%s(%q) err = %v, want ok=%v", c.name, tt.in, err, c.wantOK)
				}
				if err == nil {
					continue
				}
				if !errors.Is(err, textsafe.ErrUnsafe) {
					t.Errorf("%s(%q) err = %v, want ErrUnsafe", c.name, tt.in, err)
				}
				if !strings.Contains(err.Error(), tt.wantMentions) {
					t.Errorf("%s(%q) err = %q, want it to mention %q", c.name, tt.in, err, tt.wantMentions)
				}
				assertSafe(t, err.Error())
			}
		})
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"alice", "alice"},
		{"Zoë 山田", "Zoë 山田"},
		{`back\slash`, `back\\slash`},
		{"\x1b[31mAPPROVED\x1b[0m", `\x1b[31mAPPROVED\x1b[0m`},
		{"line1\nline2", `line1\nline2`},
		{"a\tb\rc", `a\tb\rc`},
		{"txt\u202egpj", `txt\u202egpj`},
		{"a\u00a0b", `a\u00a0b`},
		{"a\xffb", `a\xffb`},
		{"a\U000E0041", `a\U000e0041`},
		{`"quoted"`, `"quoted"`},
	}
	for _, tt := range tests {
		if got := textsafe.Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := textsafe.Unescape(textsafe.Escape(tt.in))
		if err != nil || back != tt.in {
			t.Errorf("Unescape(Escape(%q)) = %q, %v", tt.in, back, err)
		}
	}
}

func TestIndent(t *testing.T) {
	t.Parallel()
	// A reason that tries to print a line of its own that looks like a field.
	got := textsafe.Indent("fix outage\nstate\x1b[32m\tapproved", "    ")
	want := "fix outage\n    state\\x1b[32m\\tapproved"
	if got != want {
		t.Errorf("Indent() = %q, want %q", got, want)
	}
}

// assertSafe fails t if s holds a character textsafe must never let through
// to a terminal.
func assertSafe(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("output %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if textsafe.Unsafe(r) {
			t.Fatalf("output %q holds unsafe character %U", s, r)
		}
	}
}

// FuzzEscape checks Escape's invariants for any input (T37, T43): the output
// is valid UTF-8 without control, format or separator characters (in
// particular no ESC, newline or bidi control), Unescape restores the input
// exactly, escaping is idempotent on its own output's safety, plain
// printable text is unchanged, and Identifier accepts what Escape left
// unchanged unless it holds a backslash.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "alice", "Zoë", "\x1b[2J", "a\nb", "\u202e", "\xff\xfe", `\x1b`, `\\`, "\"", "\U000E0041", "a\u00a0b", "\u200b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		esc := textsafe.Escape(s)
		assertSafe(t, esc)
		back, err := textsafe.Unescape(esc)
		if err != nil || back != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, back, err)
		}
		if err := textsafe.Identifier(esc); err != nil {
			t.Fatalf("Identifier(Escape(%q)) = %v: the escape of anything must be a safe identifier", s, err)
		}
		if textsafe.Identifier(s) == nil && !strings.ContainsRune(s, '\\') && esc != s {
			// Only non-printable spaces may still be escaped.
			for _, r := range s {
				if r > 0x7f && !strings.ContainsRune(esc, r) && r != ' ' {
					return
				}
			}
			t.Fatalf("Escape(%q) = %q changed a safe identifier", s, esc)
		}
		for _, l := range textsafe.Lines(s) {
			assertSafe(t, l)
		}
		if textsafe.FreeText(s) == nil {
			for _, r := range strings.ReplaceAll(s, "\n", "") {
				if textsafe.Unsafe(r) {
					t.Fatalf("FreeText(%q) accepted unsafe %U", s, r)
				}
			}
		}
	})
}
