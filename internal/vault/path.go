package vault

import (
	"fmt"
	"strings"

	"github.com/writ-dev/writ/approval"
)

// MaxPathLen is the longest Vault path (recipe path, lease ID, mount) Writ
// accepts.
const MaxPathLen = 256

// checkPath returns an error wrapping approval.ErrInvalid unless p is a
// relative Vault path of one or more segments made of letters, digits, '_',
// '.' and '-', none of them "." or "..", at most MaxPathLen bytes long. Such a
// path cannot climb out of its mount, smuggle a query, an encoded slash or
// a NUL into the request, or name a different Vault object than it seems to
// (reliability case T37).
func checkPath(p string) error {
	if p == "" {
		return fmt.Errorf("empty vault path: %w", approval.ErrInvalid)
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("vault path of %d bytes is longer than %d: %w", len(p), MaxPathLen, approval.ErrInvalid)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("vault path %q: empty, \".\" or \"..\" segment: %w", p, approval.ErrInvalid)
		}
		for i := 0; i < len(seg); i++ {
			if !pathByte(seg[i]) {
				return fmt.Errorf("vault path %q: byte %q not allowed (letters, digits, '_', '.', '-' and '/' between segments): %w",
					p, seg[i], approval.ErrInvalid)
			}
		}
	}
	return nil
}

// pathByte reports whether b may appear in a path segment.
func pathByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '.' || b == '-'
}

// checkName returns an error wrapping approval.ErrInvalid unless name is a
// single path segment (a transit key or mount name).
func checkName(what, name string) error {
	if err := checkPath(name); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if strings.Contains(name, "/") {
		return fmt.Errorf("%s %q: must be a single path segment: %w", what, name, approval.ErrInvalid)
	}
	return nil
}
