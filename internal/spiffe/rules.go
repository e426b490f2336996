package spiffe

import (
	"errors"
	"fmt"
)

// Rule is one MUST of the SPIFFE specifications that Writ checks itself,
// on every listener, in addition to what go-spiffe checks: a SPIFFE ID, an
// X509-SVID or a JWT-SVID that breaks one is refused, and the error names
// the rule (errors.Is(err, RuleX509LeafRootPath) and so on).
//
// The table, with the section of the specification for each rule
// (SPIFFE-ID.md, X509-SVID.md and JWT-SVID.md of github.com/spiffe/spiffe):
//
//	Rule                     Spec section          Requirement
//	ID scheme                SPIFFE-ID §2, X509 §5.2  scheme is exactly "spiffe" (lowercase, as go-spiffe)
//	ID trust domain empty    SPIFFE-ID §2, §2.1    host is not empty
//	ID trust domain chars    SPIFFE-ID §2.1        host is lowercase [a-z0-9.-_]: no port, userinfo or percent-encoding
//	ID path segment          SPIFFE-ID §2.2        no empty, "." or ".." segment
//	ID path chars            SPIFFE-ID §2.2        segments are [a-zA-Z0-9.-_]: no percent-encoding, query or fragment
//	ID trailing slash        SPIFFE-ID §2.2        no trailing "/"
//	ID length                SPIFFE-ID §2.3        at most 2048 bytes, trust domain at most 255
//	X509 one URI SAN         X509-SVID §2, §5.2    exactly one URI SAN, a valid SPIFFE ID
//	X509 leaf path           X509-SVID §3.1        the leaf's SPIFFE ID has a non-root path
//	X509 SAN critical        X509-SVID §3.1        with an empty Subject the SAN extension is critical
//	X509 signing ID          X509-SVID §3.2        a signing certificate's SPIFFE ID, if any, has no path
//	X509 basic constraints   X509-SVID §4.1        present; cA false on the leaf, true on signing certificates
//	X509 key usage           X509-SVID §4.3        present and critical on every SVID
//	X509 leaf key usage      X509-SVID §4.3, §5.2  leaf: digitalSignature set; keyCertSign and cRLSign not set
//	X509 signing key usage   X509-SVID §4.3        signing certificates: keyCertSign set
//	X509 leaf EKU            X509-SVID §4.4        if present, both serverAuth and clientAuth
//	X509 path validation     X509-SVID §5.1        RFC 5280 path to the trust domain's bundle (go-spiffe, crypto/x509)
//	JWT compact              JWT-SVID §1, §5.1     JWS Compact Serialization only
//	JWT header               JWT-SVID §2           only the alg, kid and typ headers
//	JWT alg                  JWT-SVID §2.1, §4     RS256/384/512, ES256/384/512, PS256/384/512, checked before anything else
//	JWT typ                  JWT-SVID §2.3         if present, "JWT" or "JOSE"
//	JWT sub                  JWT-SVID §3.1         a valid SPIFFE ID of a workload (non-root path, as X509 §3.1)
//	JWT aud                  JWT-SVID §3.2         present with at least one value, one of them the verifier's
//	JWT exp                  JWT-SVID §3.3, §4     present and not in the past
//
// The rule that a workload's SPIFFE ID has a non-root path is written for
// leaf X509-SVIDs (§3.1); Writ applies it to JWT-SVID subjects too, since the
// root ID names the trust domain's signing authority (SPIFFE-ID §3.1), never
// a workload.
type Rule struct {
	// Section is where the specification states the rule, e.g.
	// "X509-SVID §3.1".
	Section string
	// Text says what the rule requires.
	Text string
}

// Error returns the rule as text, so a Rule can be matched with errors.Is.
func (r *Rule) Error() string { return r.Section + ": " + r.Text }

// The rules, one value each, for errors.Is.
var (
	RuleIDScheme          = &Rule{"SPIFFE-ID §2", `the scheme must be "spiffe"`}
	RuleIDTrustDomain     = &Rule{"SPIFFE-ID §2.1", "the trust domain must not be empty"}
	RuleIDTrustDomainChar = &Rule{"SPIFFE-ID §2.1", "the trust domain may hold only lowercase letters, digits, dots, dashes and underscores (no port, userinfo or percent-encoding)"}
	RuleIDSegment         = &Rule{"SPIFFE-ID §2.2", `path segments must not be empty, "." or ".."`}
	RuleIDPathChar        = &Rule{"SPIFFE-ID §2.2", "path segments may hold only letters, digits, dots, dashes and underscores (no percent-encoding, query or fragment)"}
	RuleIDTrailingSlash   = &Rule{"SPIFFE-ID §2.2", "the path must not end with a slash"}
	RuleIDLength          = &Rule{"SPIFFE-ID §2.3", "a SPIFFE ID is at most 2048 bytes and its trust domain at most 255"}

	RuleX509OneURISAN       = &Rule{"X509-SVID §2", "an X509-SVID has exactly one URI SAN"}
	RuleX509LeafPath        = &Rule{"X509-SVID §3.1", "a leaf SVID's SPIFFE ID must have a non-root path"}
	RuleX509SANCritical     = &Rule{"X509-SVID §3.1", "without a Subject the URI SAN extension must be critical"}
	RuleX509SigningID       = &Rule{"X509-SVID §3.2", "a signing certificate's SPIFFE ID must not have a path"}
	RuleX509BasicConstraint = &Rule{"X509-SVID §4.1", "basic constraints must be present, with cA false on a leaf and true on a signing certificate"}
	RuleX509KeyUsage        = &Rule{"X509-SVID §4.3", "the key usage extension must be present and critical"}
	RuleX509LeafKeyUsage    = &Rule{"X509-SVID §4.3", "a leaf must set digitalSignature and must not set keyCertSign or cRLSign"}
	RuleX509SigningKeyUsage = &Rule{"X509-SVID §4.3", "a signing certificate must set keyCertSign"}
	RuleX509LeafEKU         = &Rule{"X509-SVID §4.4", "a leaf's extended key usage, if present, must include serverAuth and clientAuth"}
	RuleX509Chain           = &Rule{"X509-SVID §5.1", "the chain must verify against the trust domain's bundle"}

	RuleJWTCompact  = &Rule{"JWT-SVID §5.1", "a JWT-SVID uses JWS Compact Serialization"}
	RuleJWTHeader   = &Rule{"JWT-SVID §2", "only the alg, kid and typ headers are allowed"}
	RuleJWTAlg      = &Rule{"JWT-SVID §2.1", "alg must be one of RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512"}
	RuleJWTTyp      = &Rule{"JWT-SVID §2.3", `typ, if present, must be "JWT" or "JOSE"`}
	RuleJWTSubject  = &Rule{"JWT-SVID §3.1", "sub must be the SPIFFE ID of a workload"}
	RuleJWTAudience = &Rule{"JWT-SVID §3.2", "aud must be present and contain the verifier's audience"}
	RuleJWTExpiry   = &Rule{"JWT-SVID §3.3", "exp must be present and not in the past"}
)

// ruleError is a rejection for breaking rule, with detail for the log.
type ruleError struct {
	rule   *Rule
	detail string
}

func (e *ruleError) Error() string {
	if e.detail == "" {
		return e.rule.Error()
	}
	return e.rule.Error() + " (" + e.detail + ")"
}

func (e *ruleError) Is(target error) bool { return target == e.rule }

// broke returns an error for rule. Attacker-chosen text in detail must be
// quoted with %q by the caller.
func broke(rule *Rule, format string, args ...any) error {
	return &ruleError{rule: rule, detail: fmt.Sprintf(format, args...)}
}

// RuleOf returns the rule err reports as broken, if any.
func RuleOf(err error) (*Rule, bool) {
	var re *ruleError
	if errors.As(err, &re) {
		return re.rule, true
	}
	return nil, false
}
