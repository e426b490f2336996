package vault

import (
	"errors"
	"strings"
	"testing"

	"github.com/writ-dev/writ/approval"
)

func TestCheckPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		path string
		ok   bool
	}{
		{"database creds", "database/creds/orders-ro", true},
		{"nested mount", "team-a/db.prod/creds/orders_ro", true},
		{"lease id", "database/creds/orders-ro/AbC123xyz.0", true},
		{"longest allowed", strings.Repeat("a", MaxPathLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxPathLen+1), false},
		{"leading slash", "/database/creds/x", false},
		{"trailing slash", "database/creds/x/", false},
		{"double slash", "database//creds/x", false},
		{"dot-dot segment", "database/creds/../../sys/seal", false},
		{"dot segment", "database/./creds/x", false},
		{"percent-encoded slash", "database/creds/x%2F..%2Fsys", false},
		{"query", "database/creds/x?ttl=9999h", false},
		{"fragment", "database/creds/x#y", false},
		{"NUL", "database/creds/x\x00", false},
		{"newline", "database/creds/x\n", false},
		{"space", "database/creds/x y", false},
		{"backslash", `database\creds\x`, false},
		{"non-ASCII", "database/creds/ordérs", false},
		{"glob", "database/creds/*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkPath(tt.path)
			if (err == nil) != tt.ok {
				t.Fatalf("checkPath(%q) err = %v, want ok %v", tt.path, err, tt.ok)
			}
			if err != nil && !errors.Is(err, approval.ErrInvalid) {
				t.Errorf("checkPath(%q) err = %v, want %v", tt.path, err, approval.ErrInvalid)
			}
		})
	}
}

// FuzzCheckPath checks reliability case T37 for Vault paths: an accepted
// path never contains "..", NUL, "%", "?", "#", "\" or an empty segment,
// and never starts with "/", whatever the input.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"database/creds/orders-ro", "../sys", "a//b", "a/./b", "a\x00b", "a%2f", "/x", "x/", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkPath(p) != nil {
			return
		}
		if len(p) > MaxPathLen || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
			t.Fatalf("checkPath(%q) accepted a malformed path", p)
		}
		for _, bad := range []string{"\x00", "%", "?", "#", `\`, " "} {
			if strings.Contains(p, bad) {
				t.Fatalf("checkPath(%q) accepted %q", p, bad)
			}
		}
		for seg := range strings.SplitSeq(p, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("checkPath(%q) accepted segment %q", p, seg)
			}
		}
	})
}

func TestSecretRolePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"database/creds/orders-ro", "database/roles/orders-ro", true},
		{"team/db/creds/r", "team/db/roles/r", true},
		{"aws/sts/deploy", "", false},
		{"creds/x", "", false},
		{"database/creds/a/b", "", false},
	}
	for _, tt := range tests {
		got, ok := secretRolePath(tt.path)
		if got != tt.want || ok != tt.ok {
			t.Errorf("secretRolePath(%q) = %q, %v; want %q, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}
