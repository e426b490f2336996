package spiffetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// JWTAuthority is a JWT-SVID signing key of a trust domain, as a SPIRE
// server holds one: it mints JWT-SVIDs (including ones a real server would
// never mint, such as expired ones) and exports its public key as a bundle.
type JWTAuthority struct {
	td    spiffeid.TrustDomain
	keyID string
	key   *ecdsa.PrivateKey
}

// NewJWTAuthority returns a fresh ES256 signing key for td with a random key
// ID.
func NewJWTAuthority(t testing.TB, td spiffeid.TrustDomain) *JWTAuthority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("spiffetest: generate JWT key: %v", err)
	}
	return &JWTAuthority{td: td, keyID: rand.Text(), key: key}
}

// KeyID is the "kid" of the key.
func (a *JWTAuthority) KeyID() string { return a.keyID }

// Bundle returns a JWT bundle of the authority's trust domain holding only
// its public key.
func (a *JWTAuthority) Bundle() *jwtbundle.Bundle {
	b := jwtbundle.New(a.td)
	_ = b.AddJWTAuthority(a.keyID, a.key.Public()) // the key ID is never empty
	return b
}

// JWK returns the public key as one entry of a SPIFFE bundle document
// (`"use": "jwt-svid"`), to add to or build a bundle file.
func (a *JWTAuthority) JWK(t testing.TB) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: a.key.Public(), KeyID: a.keyID, Algorithm: string(jose.ES256), Use: "jwt-svid"})
	if err != nil {
		t.Fatalf("spiffetest: marshal JWK: %v", err)
	}
	return b
}

// BundleJSON returns a SPIFFE bundle document holding only the public key.
func (a *JWTAuthority) BundleJSON(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": []json.RawMessage{a.JWK(t)}})
	if err != nil {
		t.Fatalf("spiffetest: marshal bundle: %v", err)
	}
	return b
}

// JWTClaims are the claims of a JWT-SVID to mint.
type JWTClaims struct {
	// Subject is the "sub" claim, a SPIFFE ID (any string, to test
	// malformed ones).
	Subject string
	// Audience is the "aud" claim.
	Audience []string
	// Expiry is the "exp" claim; zero leaves it out.
	Expiry time.Time
	// IssuedAt is the "iat" claim; zero leaves it out.
	IssuedAt time.Time
}

// Mint signs c with the authority's key and returns the compact JWT.
func (a *JWTAuthority) Mint(t testing.TB, c JWTClaims) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: a.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), a.keyID))
	if err != nil {
		t.Fatalf("spiffetest: JWT signer: %v", err)
	}
	claims := jwt.Claims{Subject: c.Subject, Audience: c.Audience}
	if !c.Expiry.IsZero() {
		claims.Expiry = jwt.NewNumericDate(c.Expiry)
	}
	if !c.IssuedAt.IsZero() {
		claims.IssuedAt = jwt.NewNumericDate(c.IssuedAt)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("spiffetest: sign JWT: %v", err)
	}
	return token
}

// MintRaw signs header and claims, serialized as given, with the
// authority's ES256 key and returns the compact JWS, whatever "alg", "typ"
// or other headers the header claims: for tokens that break the JWT-SVID
// specification. A nil header means {"alg":"ES256","kid":<key ID>,"typ":"JWT"}.
func (a *JWTAuthority) MintRaw(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	if header == nil {
		header = map[string]any{"alg": "ES256", "kid": a.keyID, "typ": "JWT"}
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatalf("spiffetest: marshal header: %v", err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("spiffetest: marshal claims: %v", err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, a.key, digest[:])
	if err != nil {
		t.Fatalf("spiffetest: sign: %v", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
