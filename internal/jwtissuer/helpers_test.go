package jwtissuer_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/jwtissuer"
)

const (
	testIssuer   = "https://writ.example.test"
	testAudience = "https://api.example.test"
)

// algorithms are the signing algorithms every behavioural test runs for.
var algorithms = []string{jwtissuer.AlgEdDSA, jwtissuer.AlgES256}

// epoch is the pinned test clock.
var epoch = time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)

// newIssuer returns an Issuer for alg with a key file in a fresh temporary
// directory and its clock pinned to now.
func newIssuer(t testing.TB, alg string, now time.Time) (*jwtissuer.Issuer, string) {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "jwt-signing.pem")
	iss, err := jwtissuer.New(jwtissuer.Config{
		KeyFile:   keyFile,
		Algorithm: alg,
		Issuer:    testIssuer,
		Now:       func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("New(%s) err = %v", alg, err)
	}
	return iss, keyFile
}

// testGrant returns a valid JWT grant decided at now for ttl.
func testGrant(now time.Time, ttl time.Duration) approval.Grant {
	return approval.Grant{
		ID:          "grant-0001",
		Principal:   "spiffe://example.test/ns/prod/sa/api",
		Entitlement: "payments-api",
		Recipe:      approval.Recipe{Kind: approval.KindJWT, Audience: []string{testAudience}},
		Rule:        "entitlements.payments-api.requesters[0]",
		TTL:         ttl,
		IssuedAt:    now,
		Expires:     now.Add(ttl),
	}
}

// mustIssue issues a token for g and returns it.
func mustIssue(t testing.TB, iss *jwtissuer.Issuer, g approval.Grant) string {
	t.Helper()
	cred, err := iss.Issue(t.Context(), g)
	if err != nil {
		t.Fatalf("Issue(%s) err = %v", g.ID, err)
	}
	return string(cred.Secret)
}

// publicKey is one key of a JWK set, as the reference verifier sees it.
type publicKey struct {
	alg string
	key any // ed25519.PublicKey or *ecdsa.PublicKey
}

// fetchJWKS GETs the key set from the issuer's handler over real HTTP and
// parses it by hand into keys by kid.
func fetchJWKS(t testing.TB, iss *jwtissuer.Issuer) map[string]publicKey {
	t.Helper()
	srv := httptest.NewServer(iss.Handler())
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatalf("GET jwks: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET jwks status = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != jwtissuer.JWKSContentType {
		t.Fatalf("GET jwks Content-Type = %q, want %q", got, jwtissuer.JWKSContentType)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read jwks: %v", err)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		t.Fatalf("parse jwks %s: %v", body, err)
	}
	return keys
}

// parseJWKS decodes an RFC 7517 key set holding OKP Ed25519 and EC P-256 keys.
func parseJWKS(data []byte) (map[string]publicKey, error) {
	var set struct {
		Keys []struct {
			Kty, Crv, X, Y, Kid, Use, Alg string
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, err
	}
	b64 := base64.RawURLEncoding.DecodeString
	keys := make(map[string]publicKey)
	for _, k := range set.Keys {
		if k.Kid == "" || k.Use != "sig" {
			return nil, fmt.Errorf("key %+v: want a kid and use sig", k)
		}
		x, err := b64(k.X)
		if err != nil {
			return nil, fmt.Errorf("key %s: x: %w", k.Kid, err)
		}
		switch {
		case k.Kty == "OKP" && k.Crv == "Ed25519" && k.Alg == "EdDSA":
			if len(x) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("key %s: x has %d bytes", k.Kid, len(x))
			}
			keys[k.Kid] = publicKey{alg: k.Alg, key: ed25519.PublicKey(x)}
		case k.Kty == "EC" && k.Crv == "P-256" && k.Alg == "ES256":
			y, err := b64(k.Y)
			if err != nil {
				return nil, fmt.Errorf("key %s: y: %w", k.Kid, err)
			}
			if len(x) != 32 || len(y) != 32 {
				return nil, fmt.Errorf("key %s: coordinates of %d and %d bytes", k.Kid, len(x), len(y))
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("key %s: %w", k.Kid, err)
			}
			keys[k.Kid] = publicKey{alg: k.Alg, key: pub}
		default:
			return nil, fmt.Errorf("key %s: unsupported kty %q crv %q alg %q", k.Kid, k.Kty, k.Crv, k.Alg)
		}
	}
	return keys, nil
}

// verifiedClaims are the claims the reference verifier decodes.
type verifiedClaims struct {
	jwt.RegisteredClaims
	Ent string `json:"ent"`
}

// verifier is the reference relying party: allowed algorithms, audience,
// issuer and a required expiry, keys from the served JWKS by kid.
type verifier struct {
	keys     map[string]publicKey
	audience string
	issuer   string
	now      time.Time
}

// parse verifies token and returns its claims.
func (v verifier) parse(token string) (*jwt.Token, *verifiedClaims, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{"EdDSA", "ES256"}),
		jwt.WithAudience(v.audience),
		jwt.WithIssuer(v.issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return v.now }),
	)
	var c verifiedClaims
	tok, err := p.ParseWithClaims(token, &c, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		k, ok := v.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		if tok.Method.Alg() != k.alg {
			return nil, fmt.Errorf("key %s is for %s, token uses %s", kid, k.alg, tok.Method.Alg())
		}
		return k.key, nil
	})
	return tok, &c, err
}

// isAny reports whether err matches one of targets.
func isAny(err error, targets ...error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
