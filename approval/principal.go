package approval

import (
	"fmt"
	"net/url"
	"strings"
)

// Principal identifies who acts or benefits, as recorded in the ledger: a
// SPIFFE ID ("spiffe://td/path") for a workload, "oidc:<issuer>#<subject>" for
// a person.
type Principal string

// String returns the principal as written in the ledger.
func (p Principal) String() string { return string(p) }

// IsWorkload reports whether p is a SPIFFE ID.
func (p Principal) IsWorkload() bool { return strings.HasPrefix(string(p), "spiffe://") }

// TrustDomain returns the trust domain of a workload principal, or "".
func (p Principal) TrustDomain() string {
	if !p.IsWorkload() {
		return ""
	}
	rest := strings.TrimPrefix(string(p), "spiffe://")
	td, _, _ := strings.Cut(rest, "/")
	return td
}

// Path returns the path of a workload principal ("/ns/prod/api"), or "".
func (p Principal) Path() string {
	if !p.IsWorkload() {
		return ""
	}
	rest := strings.TrimPrefix(string(p), "spiffe://")
	_, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return "/" + path
}

// ParseWorkload checks that s is a SPIFFE ID as the SPIFFE specification
// defines it (lowercase trust domain, non-empty path segments without "." or
// "..", no query, fragment, port or user info) and returns it as a Principal.
func ParseWorkload(s string) (Principal, error) {
	if len(s) > 2048 {
		return "", fmt.Errorf("spiffe id longer than 2048 bytes: %w", ErrInvalid)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "spiffe" {
		return "", fmt.Errorf("%q is not a spiffe:// URI: %w", s, ErrInvalid)
	}
	if u.Host == "" || u.Opaque != "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("%q: a SPIFFE ID has a trust domain and path only: %w", s, ErrInvalid)
	}
	for _, r := range u.Host {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return "", fmt.Errorf("%q: trust domain may contain only lowercase letters, digits, '.', '-' and '_': %w", s, ErrInvalid)
		}
	}
	if u.Path == "" {
		return "", fmt.Errorf("%q: a workload SPIFFE ID needs a path, not the bare trust domain: %w", s, ErrInvalid)
	}
	if err := checkPath(u.Path); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	if u.RawPath != "" || strings.Contains(s, "%") {
		return "", fmt.Errorf("%q: percent-encoding is not allowed in SPIFFE IDs: %w", s, ErrInvalid)
	}
	return Principal(s), nil
}

func checkPath(p string) error {
	for _, seg := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		switch seg {
		case "":
			return fmt.Errorf("empty path segment: %w", ErrInvalid)
		case ".", "..":
			return fmt.Errorf("path segment %q is not allowed: %w", seg, ErrInvalid)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				return fmt.Errorf("path segment %q may contain only letters, digits, '.', '-' and '_': %w", seg, ErrInvalid)
			}
		}
	}
	return nil
}
