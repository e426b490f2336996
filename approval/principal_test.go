package approval

import (
	"errors"
	"strings"
	"testing"
)

func TestParseWorkload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		wantErr  string // empty: valid
	}{
		{name: "simple id", in: "spiffe://example.org/ns/prod/api"},
		{name: "dots and dashes", in: "spiffe://ex-ample.org/a.b/c_d-e"},
		{name: "bare trust domain is not a workload", in: "spiffe://example.org", wantErr: "needs a path"},
		{name: "trailing slash", in: "spiffe://example.org/api/", wantErr: "empty path segment"},
		{name: "double slash", in: "spiffe://example.org//api", wantErr: "empty path segment"},
		{name: "dot dot segment", in: "spiffe://example.org/a/../b", wantErr: `".."`},
		{name: "dot segment", in: "spiffe://example.org/a/./b", wantErr: `"."`},
		{name: "wrong scheme", in: "https://example.org/api", wantErr: "not a spiffe:// URI"},
		{name: "uppercase trust domain", in: "spiffe://Example.org/api", wantErr: "trust domain"},
		{name: "port", in: "spiffe://example.org:8080/api", wantErr: "trust domain and path only"},
		{name: "query", in: "spiffe://example.org/api?x=1", wantErr: "trust domain and path only"},
		{name: "fragment", in: "spiffe://example.org/api#x", wantErr: "trust domain and path only"},
		{name: "user info", in: "spiffe://u@example.org/api", wantErr: "trust domain and path only"},
		{name: "percent encoding", in: "spiffe://example.org/a%2Fb", wantErr: "percent-encoding"},
		{name: "NUL byte", in: "spiffe://example.org/a\x00b", wantErr: "not a spiffe:// URI"},
		{name: "too long", in: "spiffe://example.org/" + strings.Repeat("a", 2100), wantErr: "longer than 2048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := ParseWorkload(tt.in)
			if tt.wantErr == "" {
				if err != nil || string(p) != tt.in {
					t.Fatalf("ParseWorkload(%q) = %q, %v; want it back", tt.in, p, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseWorkload(%q) err = %v, want ErrInvalid mentioning %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestPrincipal_Parts(t *testing.T) {
	t.Parallel()
	p := Principal("spiffe://example.org/ns/prod")
	if p.TrustDomain() != "example.org" || p.Path() != "/ns/prod" || !p.IsWorkload() {
		t.Errorf("parts of %q = %q %q %v", p, p.TrustDomain(), p.Path(), p.IsWorkload())
	}
	person := Principal("oidc:https://idp#alice")
	if person.TrustDomain() != "" || person.Path() != "" || person.IsWorkload() {
		t.Errorf("a person has no trust domain or path: %q %q", person.TrustDomain(), person.Path())
	}
}

// T37: path matching never lets a prefix rule match outside its segment.
func TestRequester_Matches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		id      Principal
		want    bool
	}{
		{"spiffe://td/ns/prod/api", "spiffe://td/ns/prod/api", true},
		{"spiffe://td/ns/prod/api", "spiffe://td/ns/prod/api2", false},
		{"spiffe://td/ns/prod/api", "spiffe://td/ns/prod/api/x", false},
		{"spiffe://td/ns/prod/*", "spiffe://td/ns/prod/api", true},
		{"spiffe://td/ns/prod/*", "spiffe://td/ns/prod/a/b/c", true},
		{"spiffe://td/ns/prod/*", "spiffe://td/ns/prod", false},
		{"spiffe://td/ns/prod/*", "spiffe://td/ns/production/api", false},
		{"spiffe://td/ns/prod/*", "spiffe://other/ns/prod/api", false},
	}
	for _, tt := range tests {
		r, err := ParseRequester(tt.pattern, "td")
		if err != nil {
			t.Fatalf("ParseRequester(%q): %v", tt.pattern, err)
		}
		if got := r.Matches(tt.id); got != tt.want {
			t.Errorf("ParseRequester(%q).Matches(%q) = %v, want %v", tt.pattern, tt.id, got, tt.want)
		}
	}
}

func TestParseRequester_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, pattern, want string }{
		{"star in the middle", "spiffe://td/ns/*/api", "'*' is allowed only"},
		{"star glued to a segment", "spiffe://td/ns/prod*", "'*' is allowed only"},
		{"foreign trust domain", "spiffe://other/ns/prod", `trust domain "other" is not the policy's trust domain "td"`},
		{"bare trust domain prefix", "spiffe://td/*", "needs a path"},
		{"not a spiffe id", "ns/prod", "not a spiffe:// URI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseRequester(tt.pattern, "td")
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseRequester(%q) err = %v, want ErrInvalid mentioning %q", tt.pattern, err, tt.want)
			}
		})
	}
}

func TestSecret_Redacts(t *testing.T) {
	t.Parallel()
	s := Secret("hunter2")
	for _, got := range []string{s.String(), s.GoString(), s.LogValue().String()} {
		if strings.Contains(got, "hunter2") {
			t.Errorf("Secret printed as %q", got)
		}
	}
}
