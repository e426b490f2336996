package main

import (
	"strings"

	"github.com/writ-dev/writ/internal/textsafe"
)

// Everything the broker returns may carry text an attacker chose (a reason,
// a ticket, an ID token's subject, an error naming an entitlement), so every
// printer passes each string through one of these before it reaches the
// terminal (T43). JSON output needs none: the encoder escapes control
// characters, and a JSON consumer is not a terminal.

// esc returns s escaped onto one line: control and format characters
// (ESC, newlines, tabs, bidi controls, zero-width characters) become
// visible escapes such as \x1b, \n and \u202e.
func esc(s string) string { return textsafe.Escape(s) }

// escJoin escapes each element of list and joins them with sep.
func escJoin(list []string, sep string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = esc(s)
	}
	return strings.Join(out, sep)
}

// escList formats list like %v does ("[a b]"), each element escaped.
func escList(list []string) string { return "[" + escJoin(list, " ") + "]" }

// escBlock escapes multi-line free text for a value of a tabwriter table:
// each line escaped, every line after the first starting with a tab so it
// sits in the value column under its field, where it cannot pose as a field
// of its own.
func escBlock(s string) string { return textsafe.Indent(s, "\t  ") }

// escIndented is escBlock for plain (non-table) output: continuation lines
// are indented by prefix.
func escIndented(s, prefix string) string { return textsafe.Indent(s, prefix) }
