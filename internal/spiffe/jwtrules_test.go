package spiffe_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
)

// TestVerifyJWTSVID_Rules has one token per rule of the JWT-SVID
// specification (and the SPIFFE-ID rules through "sub"), each signed by a
// trusted key so that only the rule can reject it.
func TestVerifyJWTSVID_Rules(t *testing.T) {
	t.Parallel()
	a := spiffetest.NewJWTAuthority(t, testTD)
	now := time.Now() // go-spiffe checks expiry against the wall clock
	v, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{Bundles: jwtbundle.NewSet(a.Bundle()), TrustDomain: testTD, Audience: testAudience,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	header := func(extra map[string]any) map[string]any {
		h := map[string]any{"alg": "ES256", "kid": a.KeyID(), "typ": "JWT"}
		for k, val := range extra {
			if val == nil {
				delete(h, k)
			} else {
				h[k] = val
			}
		}
		return h
	}
	claims := func(extra map[string]any) map[string]any {
		c := map[string]any{"sub": clientID.String(), "aud": []string{testAudience}, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix()}
		for k, val := range extra {
			if val == nil {
				delete(c, k)
			} else {
				c[k] = val
			}
		}
		return c
	}
	valid := a.MintRaw(t, header(nil), claims(nil))

	tests := []struct {
		name  string
		token string
		rule  *spiffe.Rule // nil: valid
	}{
		{"valid", valid, nil},
		{"valid with typ JOSE and a single-string aud", a.MintRaw(t, header(map[string]any{"typ": "JOSE"}), claims(map[string]any{"aud": testAudience})), nil},
		{"valid without typ", a.MintRaw(t, header(map[string]any{"typ": nil}), claims(nil)), nil},
		{"§5.1 JSON serialization", jsonSerialization(t, valid), spiffe.RuleJWTCompact},
		{"§5.1 two parts", strings.Join(strings.Split(valid, ".")[:2], "."), spiffe.RuleJWTCompact},
		{"§2 jwk header", a.MintRaw(t, header(map[string]any{"jwk": map[string]any{"kty": "EC"}}), claims(nil)), spiffe.RuleJWTHeader},
		{"§2 crit header", a.MintRaw(t, header(map[string]any{"crit": []string{"exp"}}), claims(nil)), spiffe.RuleJWTHeader},
		{"§2 cty header", a.MintRaw(t, header(map[string]any{"cty": "JWT"}), claims(nil)), spiffe.RuleJWTHeader},
		{"§2.1 alg none", a.MintRaw(t, header(map[string]any{"alg": "none"}), claims(nil)), spiffe.RuleJWTAlg},
		{"§2.1 alg HS256", a.MintRaw(t, header(map[string]any{"alg": "HS256"}), claims(nil)), spiffe.RuleJWTAlg},
		{"§2.1 alg EdDSA", a.MintRaw(t, header(map[string]any{"alg": "EdDSA"}), claims(nil)), spiffe.RuleJWTAlg},
		{"§2.1 alg missing", a.MintRaw(t, header(map[string]any{"alg": nil}), claims(nil)), spiffe.RuleJWTAlg},
		{"§2.1 alg lowercase", a.MintRaw(t, header(map[string]any{"alg": "es256"}), claims(nil)), spiffe.RuleJWTAlg},
		{"§2.3 typ at+jwt", a.MintRaw(t, header(map[string]any{"typ": "at+jwt"}), claims(nil)), spiffe.RuleJWTTyp},
		{"§2.3 typ not a string", a.MintRaw(t, header(map[string]any{"typ": 1}), claims(nil)), spiffe.RuleJWTTyp},
		{"§3.1 sub missing", a.MintRaw(t, header(nil), claims(map[string]any{"sub": nil})), spiffe.RuleJWTSubject},
		{"§3.1 sub not a SPIFFE ID", a.MintRaw(t, header(nil), claims(map[string]any{"sub": "alice"})), spiffe.RuleIDScheme},
		// The rule whose X.509 form crashed writd serve; as a JWT-SVID it
		// was accepted.
		{"§3.1 sub is the trust domain's root ID", a.MintRaw(t, header(nil), claims(map[string]any{"sub": "spiffe://example.org"})), spiffe.RuleJWTSubject},
		{"§3.1 sub with uppercase trust domain", a.MintRaw(t, header(nil), claims(map[string]any{"sub": "spiffe://EXAMPLE.org/api"})), spiffe.RuleIDTrustDomainChar},
		{"§3.1 sub with a port", a.MintRaw(t, header(nil), claims(map[string]any{"sub": "spiffe://example.org:443/api"})), spiffe.RuleIDTrustDomainChar},
		{"§3.1 sub with a dot segment", a.MintRaw(t, header(nil), claims(map[string]any{"sub": "spiffe://example.org/a/../api"})), spiffe.RuleIDSegment},
		{"§3.1 sub with a trailing slash", a.MintRaw(t, header(nil), claims(map[string]any{"sub": "spiffe://example.org/api/"})), spiffe.RuleIDTrailingSlash},
		{"§3.1 sub with an ANSI escape", a.MintRaw(t, header(nil), claims(map[string]any{"sub": "spiffe://example.org/api\x1b[2J"})), spiffe.RuleIDPathChar},
		{"§3.1 sub over 2048 bytes", a.MintRaw(t, header(nil), claims(map[string]any{"sub": "spiffe://example.org/" + strings.Repeat("a", 2048)})), spiffe.RuleIDLength},
		{"§3.2 aud missing", a.MintRaw(t, header(nil), claims(map[string]any{"aud": nil})), spiffe.RuleJWTAudience},
		{"§3.2 aud empty list", a.MintRaw(t, header(nil), claims(map[string]any{"aud": []string{}})), spiffe.RuleJWTAudience},
		{"§3.2 aud another service", a.MintRaw(t, header(nil), claims(map[string]any{"aud": []string{"spiffe://example.org/other"}})), spiffe.RuleJWTAudience},
		{"§3.2 aud not strings", a.MintRaw(t, header(nil), claims(map[string]any{"aud": []int{1}})), spiffe.RuleJWTAudience},
		{"§3.3 exp missing", a.MintRaw(t, header(nil), claims(map[string]any{"exp": nil})), spiffe.RuleJWTExpiry},
		{"§3.3 exp in the past", a.MintRaw(t, header(nil), claims(map[string]any{"exp": now.Add(-time.Minute).Unix()})), spiffe.RuleJWTExpiry},
		{"§3.3 exp not a number", a.MintRaw(t, header(nil), claims(map[string]any{"exp": "tomorrow"})), spiffe.RuleJWTExpiry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := v.VerifyJWTSVID(context.Background(), tt.token)
			if tt.rule == nil {
				if err != nil || id != clientID {
					t.Fatalf("VerifyJWTSVID() = %q, %v; want %q", id, err, clientID)
				}
				return
			}
			if !errors.Is(err, spiffe.ErrInvalidJWTSVID) || !errors.Is(err, tt.rule) {
				t.Fatalf("VerifyJWTSVID() = %q, %v; want ErrInvalidJWTSVID and rule %q", id, err, tt.rule)
			}
			if strings.ContainsRune(err.Error(), 0x1b) {
				t.Errorf("error %q holds a raw ESC", err)
			}
		})
	}
}

// jsonSerialization re-encodes a compact JWS in the flattened JSON
// serialization, which JWT-SVID §5.1 forbids.
func jsonSerialization(t *testing.T, compact string) string {
	t.Helper()
	p := strings.Split(compact, ".")
	b, err := json.Marshal(map[string]string{"protected": p[0], "payload": p[1], "signature": p[2]})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
