package spiffe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// MaxJWTSVIDLen is the longest token VerifyJWTSVID parses, in bytes. A
// JWT-SVID is a few hundred bytes; anything much larger is refused before
// any decoding.
const MaxJWTSVIDLen = 8 << 10

// JWTVerifierConfig configures NewJWTVerifier.
type JWTVerifierConfig struct {
	// Bundles supplies the JWT-SVID signing keys: NewWorkloadJWTBundleSource
	// or NewJWTBundleFileSource. Required. Only the bundle of TrustDomain is
	// ever asked for.
	Bundles jwtbundle.Source
	// TrustDomain is the only trust domain whose JWT-SVIDs are accepted.
	// Required.
	TrustDomain spiffeid.TrustDomain
	// Audience is the value the token's "aud" claim must contain, for
	// example "spiffe://example.org/writd". Required.
	Audience string
	// Now is the clock "exp" is checked against (with JWTLeeway); nil means
	// time.Now. go-spiffe checks "exp" against the wall clock as well.
	Now func() time.Time
}

// JWTLeeway is the clock skew tolerated on "exp".
const JWTLeeway = 30 * time.Second

// JWTVerifier checks JWT-SVIDs presented as bearer tokens. It is safe for
// concurrent use.
type JWTVerifier struct {
	bundles  jwtbundle.Source
	td       spiffeid.TrustDomain
	audience []string
	now      func() time.Time
}

// NewJWTVerifier returns a verifier for cfg. It returns ErrConfig if a
// required field is missing.
func NewJWTVerifier(cfg JWTVerifierConfig) (*JWTVerifier, error) {
	switch {
	case cfg.Bundles == nil:
		return nil, fmt.Errorf("spiffe: JWT-SVID verifier: no bundle source: %w", ErrConfig)
	case cfg.TrustDomain.IsZero():
		return nil, fmt.Errorf("spiffe: JWT-SVID verifier: no trust domain: %w", ErrConfig)
	case cfg.Audience == "":
		return nil, fmt.Errorf("spiffe: JWT-SVID verifier: no audience: %w", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &JWTVerifier{
		bundles:  trustDomainOnly{src: cfg.Bundles, td: cfg.TrustDomain},
		td:       cfg.TrustDomain,
		audience: []string{cfg.Audience},
		now:      cfg.Now,
	}, nil
}

// VerifyJWTSVID returns the SPIFFE ID of token, a JWT-SVID, after checking
// its size, every rule of the JWT-SVID and SPIFFE-ID specifications (see
// Rule: compact serialization, only the alg, kid and typ headers, alg
// RS/ES/PS 256/384/512, typ JWT or JOSE, sub the SPIFFE ID of a workload,
// aud and exp present), its signature against the JWT bundle of the
// verifier's trust domain, its expiry, that its "aud" contains the
// verifier's audience and that its subject is in the verifier's trust
// domain. Any failure returns an error wrapping ErrInvalidJWTSVID and, where
// one was broken, the Rule; the error never contains the token and quotes
// claim values escaped. A done ctx returns its error.
func (v *JWTVerifier) VerifyJWTSVID(ctx context.Context, token string) (spiffeid.ID, error) {
	if err := ctx.Err(); err != nil {
		return spiffeid.ID{}, err
	}
	if len(token) > MaxJWTSVIDLen {
		return spiffeid.ID{}, fmt.Errorf("spiffe: JWT-SVID of %d bytes exceeds %d: %w", len(token), MaxJWTSVIDLen, ErrInvalidJWTSVID)
	}
	id, err := checkJWTSVID(token, v.audience[0], v.now())
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("spiffe: %w: %w", ErrInvalidJWTSVID, err)
	}
	svid, err := jwtsvid.ParseAndValidate(token, v.bundles, v.audience)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("spiffe: %w: %w", ErrInvalidJWTSVID, err)
	}
	if svid.ID != id {
		// Both read the same sub; a difference is a bug, so fail closed.
		return spiffeid.ID{}, fmt.Errorf("spiffe: JWT-SVID subject %q read as %q by go-spiffe: %w", id, svid.ID, ErrInvalidJWTSVID)
	}
	// trustDomainOnly already refuses other trust domains' keys; this keeps
	// the rule independent of the source.
	if !svid.ID.MemberOf(v.td) {
		return spiffeid.ID{}, fmt.Errorf("spiffe: JWT-SVID for %s is not in trust domain %s: %w", svid.ID, v.td, ErrInvalidJWTSVID)
	}
	return svid.ID, nil
}

var errForeignTrustDomain = errors.New("foreign trust domain")

// trustDomainOnly serves only td's bundle from src, so a federated bundle in
// a Workload API source never validates a token.
type trustDomainOnly struct {
	src jwtbundle.Source
	td  spiffeid.TrustDomain
}

func (s trustDomainOnly) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	if td != s.td {
		return nil, fmt.Errorf("trust domain %q, want %q: %w", td, s.td, errForeignTrustDomain)
	}
	return s.src.GetJWTBundleForTrustDomain(td)
}
