package jwtissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
)

// JWKSContentType is the media type of a JWK set (RFC 7517, section 8.5.1).
const JWKSContentType = "application/jwk-set+json"

// jwk is a public JSON Web Key (RFC 7517) for an Ed25519 (RFC 8037) or P-256
// (RFC 7518) key.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// jwkSet is a JWK set document.
type jwkSet struct {
	Keys []jwk `json:"keys"`
}

// publicJWK returns the public JWK of key, with kid set to its RFC 7638
// thumbprint.
func publicJWK(key crypto.Signer, alg string) (jwk, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var k jwk
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		k = jwk{Kty: "OKP", Crv: "Ed25519", X: b64(pub)}
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes() // 0x04 || X || Y, each coordinate padded to 32 bytes
		if err != nil || len(raw) != 65 {
			return jwk{}, fmt.Errorf("encode P-256 public key: %v", err)
		}
		k = jwk{Kty: "EC", Crv: "P-256", X: b64(raw[1:33]), Y: b64(raw[33:])}
	default:
		return jwk{}, fmt.Errorf("unsupported public key type %T", pub)
	}
	k.Kid = thumbprint(k)
	k.Use = "sig"
	k.Alg = alg
	return k, nil
}

// thumbprint returns the RFC 7638 JWK thumbprint of k: the base64url-encoded
// SHA-256 of the required members in lexicographic order, without whitespace.
// Base64url values need no JSON escaping, so the canonical form is built
// directly.
func thumbprint(k jwk) string {
	var canon string
	switch k.Kty {
	case "OKP":
		canon = `{"crv":"` + k.Crv + `","kty":"OKP","x":"` + k.X + `"}`
	case "EC":
		canon = `{"crv":"` + k.Crv + `","kty":"EC","x":"` + k.X + `","y":"` + k.Y + `"}`
	}
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JWKS returns the issuer's public key set as an RFC 7517 JWK set document.
func (i *Issuer) JWKS() ([]byte, error) {
	return append([]byte(nil), i.jwks...), nil
}

// Handler returns an http.Handler that serves the public key set (GET and
// HEAD only) with Content-Type application/jwk-set+json. Responses may be
// cached for five minutes: a new key is only picked up by relying parties
// after that, which is fine because the key changes only when an operator
// replaces the key file and restarts the broker.
func (i *Issuer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", JWKSContentType)
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(i.jwks)
	})
}

// marshalJWKS encodes the key set holding k.
func marshalJWKS(k jwk) ([]byte, error) {
	b, err := json.Marshal(jwkSet{Keys: []jwk{k}})
	if err != nil {
		return nil, fmt.Errorf("encode jwks: %w", err)
	}
	return b, nil
}
