package spiffe

import (
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Limits of SPIFFE-ID §2.3.
const (
	// MaxIDLen is the longest SPIFFE ID accepted, in bytes.
	MaxIDLen = 2048
	// MaxTrustDomainLen is the longest trust domain name accepted, in bytes.
	MaxTrustDomainLen = 255
)

const scheme = "spiffe://"

// ParseID parses s, the exact text of a SPIFFE ID as it appeared in a
// certificate or token, and checks every rule of the SPIFFE-ID
// specification itself (see Rule): the scheme is exactly "spiffe", the trust
// domain is non-empty lowercase [a-z0-9.-_] (so no port, userinfo or
// percent-encoding) of at most 255 bytes, path segments are non-empty
// [a-zA-Z0-9.-_] and not "." or "..", there is no trailing slash, query or
// fragment, and the whole ID is at most 2048 bytes. The trust domain's own
// ID ("spiffe://example.org") is valid; use ParseWorkloadID where a
// workload is meant. Errors quote s escaped and wrap the broken Rule.
func ParseID(s string) (spiffeid.ID, error) {
	if len(s) > MaxIDLen {
		return spiffeid.ID{}, broke(RuleIDLength, "%d bytes", len(s))
	}
	rest, ok := strings.CutPrefix(s, scheme)
	if !ok {
		return spiffeid.ID{}, broke(RuleIDScheme, "%q", s)
	}
	td, p, found := strings.Cut(rest, "/")
	path := ""
	if found {
		path = "/" + p
	}
	switch {
	case td == "":
		return spiffeid.ID{}, broke(RuleIDTrustDomain, "%q", s)
	case len(td) > MaxTrustDomainLen:
		return spiffeid.ID{}, broke(RuleIDLength, "trust domain of %d bytes", len(td))
	}
	for i := 0; i < len(td); i++ {
		if !isTrustDomainChar(td[i]) {
			return spiffeid.ID{}, broke(RuleIDTrustDomainChar, "%q at byte %d of %q", td[i], len(scheme)+i, s)
		}
	}
	if path != "" {
		if strings.HasSuffix(path, "/") {
			return spiffeid.ID{}, broke(RuleIDTrailingSlash, "%q", s)
		}
		for _, seg := range strings.Split(path[1:], "/") {
			switch seg {
			case "", ".", "..":
				return spiffeid.ID{}, broke(RuleIDSegment, "segment %q of %q", seg, s)
			}
			for i := 0; i < len(seg); i++ {
				if !isPathChar(seg[i]) {
					return spiffeid.ID{}, broke(RuleIDPathChar, "%q in segment %q of %q", seg[i], seg, s)
				}
			}
		}
	}
	// go-spiffe's parser is stricter than none and looser than the above;
	// what passed here must parse there.
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, broke(RuleIDPathChar, "%q: %v", s, err)
	}
	return id, nil
}

// ParseWorkloadID is ParseID for the ID of a workload (an X509-SVID leaf or
// a JWT-SVID subject), which must have a non-root path (X509-SVID §3.1). A
// root ID is refused with an error wrapping rootRule.
func ParseWorkloadID(s string, rootRule *Rule) (spiffeid.ID, error) {
	id, err := ParseID(s)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if id.Path() == "" {
		return spiffeid.ID{}, broke(rootRule, "%q is the trust domain's own ID, not a workload's", s)
	}
	return id, nil
}

func isTrustDomainChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

func isPathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}
