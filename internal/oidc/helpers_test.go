package oidc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/writ-dev/writ/internal/oidc"
)

const (
	testAudience = "writ-admin"
	rsaKID       = "rsa-1"
)

// epoch is the pinned test clock.
var epoch = time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)

func now() time.Time { return epoch }

// rsaKey is the fake provider's RSA signing key, generated once per test
// binary because RSA key generation is slow under the race detector.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// newECKey returns a fresh P-256 key.
func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate P-256 key: %v", err)
	}
	return k
}

// fakeIdP is an OpenID provider serving a discovery document and a key set
// over HTTP. It is a fake for unit tests of the Verifier only.
type fakeIdP struct {
	srv     *httptest.Server
	issuer  string
	fetches atomic.Int32 // key set fetches

	mu   sync.Mutex
	keys []map[string]string
	// discoIssuer, if set, is the issuer the discovery document names.
	discoIssuer string
}

// newFakeIdP starts a provider whose key set holds the RSA key under rsaKID.
func newFakeIdP(t testing.TB) *fakeIdP {
	t.Helper()
	p := &fakeIdP{}
	p.srv = httptest.NewUnstartedServer(nil)
	p.issuer = "http://" + p.srv.Listener.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+oidc.DiscoveryPath, func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		iss := p.issuer
		if p.discoIssuer != "" {
			iss = p.discoIssuer
		}
		p.mu.Unlock()
		writeJSON(w, map[string]string{"issuer": iss, "jwks_uri": p.issuer + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		writeJSON(w, map[string]any{"keys": p.keys})
	})
	p.srv.Config.Handler = mux
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	p.addRSA(rsaKID, &rsaKey().PublicKey)
	return p
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

var b64 = base64.RawURLEncoding.EncodeToString

// setDiscoIssuer makes the discovery document name iss as the issuer.
func (p *fakeIdP) setDiscoIssuer(iss string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.discoIssuer = iss
}

// addRSA publishes pub under kid.
func (p *fakeIdP) addRSA(kid string, pub *rsa.PublicKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, map[string]string{
		"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	})
}

// addEC publishes pub under kid.
func (p *fakeIdP) addEC(t *testing.T, kid string, pub *ecdsa.PublicKey) {
	t.Helper()
	raw, err := pub.Bytes()
	if err != nil {
		t.Fatalf("encode P-256 key: %v", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, map[string]string{
		"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
		"x": b64(raw[1:33]), "y": b64(raw[33:]),
	})
}

// config returns a Verifier Config for p with the clock pinned to epoch.
func (p *fakeIdP) config() oidc.Config {
	return oidc.Config{
		Issuer:     p.issuer,
		Audience:   testAudience,
		HTTPClient: p.srv.Client(),
		Now:        now,
	}
}

// newVerifier returns a Verifier for cfg, closed when the test ends.
func newVerifier(t testing.TB, cfg oidc.Config) *oidc.Verifier {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	v, err := oidc.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New() err = %v", err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("Close() err = %v", err)
		}
	})
	return v
}

// claims returns valid claims for p's tokens, changed by edit.
func (p *fakeIdP) claims(edit func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss":    p.issuer,
		"aud":    testAudience,
		"sub":    "alice",
		"email":  "alice@example.test",
		"groups": []string{"dba", "oncall"},
		"iat":    epoch.Unix(),
		"exp":    epoch.Add(time.Hour).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// sign returns claims signed with key by method, with kid in the header
// unless kid is empty.
func sign(t testing.TB, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s token: %v", method.Alg(), err)
	}
	return s
}
