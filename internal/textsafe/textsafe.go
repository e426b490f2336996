// Package textsafe keeps text that comes from outside Writ (ID token claims,
// SPIFFE IDs, reasons, comments, tickets) from ever acting as terminal or
// chat control (reliability case T43).
//
// It has two halves:
//
//   - Validation at the API edge. Identifier rejects any control character
//     (Unicode category Cc, including ESC and newline), any format character
//     (Cf: bidi controls U+202A–U+202E and U+2066–U+2069, zero-width
//     characters, the byte order mark, soft hyphen, tag characters), the line
//     and paragraph separators U+2028/U+2029, and invalid UTF-8. FreeText
//     rejects the same except newline, so a reason may span lines.
//     Tab and carriage return are rejected in free text too: a tab moves text
//     into another column of a table and a carriage return overwrites the
//     start of a line, and neither is needed to write a justification.
//
//   - Escaping at every output. Escape turns a string into one printable
//     line: a backslash becomes `\\`, every rune that unicode.IsPrint rejects
//     (controls, format characters, non-ASCII spaces) becomes `\xNN`,
//     `\uNNNN` or `\UNNNNNNNN`, and each byte of invalid UTF-8 becomes
//     `\xNN`. The output has no control or format character, and Unescape
//     restores the input exactly. Lines escapes each line of multi-line text
//     the same way, for printing indented under its field so that no line of
//     it can pose as a field of its own.
//
// Stored text is never rewritten: validation refuses, escaping happens only
// when text is shown.
package textsafe

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrUnsafe is wrapped by every error of Identifier and FreeText.
var ErrUnsafe = errors.New("text contains a control or format character or invalid UTF-8")

// Identifier returns nil if s may be used as an identifier (an OIDC subject,
// a group, an email address, a SPIFFE ID, a ticket): valid UTF-8 without any
// control or format character. Otherwise it returns an error wrapping
// ErrUnsafe that names the first offending character and its byte offset,
// escaped.
func Identifier(s string) error { return check(s, false) }

// FreeText returns nil if s may be stored as free text (a reason, a comment,
// review notes): as Identifier, but newlines are allowed.
func FreeText(s string) error { return check(s, true) }

func check(s string, newlines bool) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d: %w", i, ErrUnsafe)
			}
		}
		if r == '\n' && newlines {
			continue
		}
		if Unsafe(r) {
			return fmt.Errorf("character %s at byte %d is not allowed: %w", Escape(string(r)), i, ErrUnsafe)
		}
	}
	return nil
}

// Unsafe reports whether r is a control character (Cc), a format character
// (Cf) or a line or paragraph separator (Zl, Zp): characters that can steer
// a terminal, reorder text (bidi controls) or hide text (zero-width).
func Unsafe(r rune) bool {
	return unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) ||
		unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r)
}

// Escape returns s as one line of printable text: `\` becomes `\\`, and
// everything unicode.IsPrint rejects (control and format characters,
// newlines, tabs, non-ASCII spaces) and every byte of invalid UTF-8 is
// written as a Go escape (`\x1b`, `\n`, `\u202e`). Printable text, including
// non-Latin scripts, is unchanged.
func Escape(s string) string {
	if isPlain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		default:
			// strconv's escapes (\n, \t, \x1b, \u202e, \U000e0001) are the
			// ones Unescape reads back.
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// isPlain reports whether s is printable ASCII without a backslash, the
// common case Escape returns unchanged.
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// Lines splits s at newlines and escapes each line with Escape. Print the
// first line after the field name and the others indented under it.
func Lines(s string) []string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Escape(l)
	}
	return lines
}

// Indent returns s escaped with Lines and joined so that every line after
// the first starts with prefix, for example "\t" in a tabwriter table (an
// empty first column) or spaces in plain output.
func Indent(s, prefix string) string {
	return strings.Join(Lines(s), "\n"+prefix)
}

// Unescape reverses Escape. It returns an error for text Escape cannot have
// produced.
func Unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	out, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`)
	if err != nil {
		return "", fmt.Errorf("textsafe: unescape: %w", err)
	}
	return out, nil
}
