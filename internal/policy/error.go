package policy

import (
	"fmt"
	"strings"

	"github.com/writ-dev/writ/approval"
)

// Error is one problem found in a policy file. Load and Parse return every
// problem they find, joined with errors.Join and sorted by line; use
// errors.As to reach the first one, or errors.Is with approval.ErrInvalid or
// approval.ErrUnsupported to classify them.
type Error struct {
	// File is the name the policy was loaded from.
	File string
	// Line is the 1-based line of the offending YAML node, or 0 when the
	// problem concerns the whole file.
	Line int
	// Path is the field path, such as "entitlements[0].max_ttl", or "" for
	// the document itself.
	Path string
	// Msg says what is wrong and, where it helps, how to fix it.
	Msg string
	// Err is approval.ErrInvalid, or approval.ErrUnsupported for something
	// this version of writd recognises but does not implement. It is not
	// part of the message.
	Err error
}

// Error formats the problem as "file:line: path: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the sentinel classifying the problem.
func (e *Error) Unwrap() error { return e.Err }

// trimSentinel drops the ": invalid argument" suffix that approval's parsers
// append, since the file:line prefix already says the policy is invalid.
func trimSentinel(err error) string {
	return strings.TrimSuffix(err.Error(), ": "+approval.ErrInvalid.Error())
}
