package vault

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/api"

	"github.com/writ-dev/writ/approval"
)

// JWKSContentType is the media type of a JWK set (RFC 7517, section 8.5.1).
const JWKSContentType = "application/jwk-set+json"

// transitKey is what Writ needs to know about a transit key.
type transitKey struct {
	// alg is the JWS algorithm the key's type signs with.
	alg string
	// latest is the version Vault signs with by default.
	latest int
	// versions holds the public key of every version Vault still verifies
	// (from min_decryption_version on): *ecdsa.PublicKey or
	// ed25519.PublicKey.
	versions map[int]any
}

// readKey reads transit key name and parses its public keys.
func (t *TransitJWTIssuer) readKey(ctx context.Context, name string) (transitKey, error) {
	path := t.mount + "/keys/" + name
	var secret *api.Secret
	err := t.c.do(ctx, op{name: "read transit key", path: path, capability: "read", idempotent: true}, func(ctx context.Context) error {
		var err error
		secret, err = t.c.api.Logical().ReadWithContext(ctx, path)
		return err
	})
	if err != nil {
		return transitKey{}, err
	}
	if secret == nil || secret.Data == nil {
		return transitKey{}, fmt.Errorf("read transit key: %q: no such key: %w", path, ErrNotFound)
	}
	return parseTransitKey(path, secret.Data)
}

// parseTransitKey parses the answer of a read of transit/keys/<name>.
func parseTransitKey(path string, data map[string]any) (transitKey, error) {
	var k transitKey
	typ, _ := data["type"].(string)
	switch typ {
	case "ecdsa-p256":
		k.alg = jwt.SigningMethodES256.Alg()
	case "ed25519":
		k.alg = jwt.SigningMethodEdDSA.Alg()
	default:
		return transitKey{}, fmt.Errorf("transit key %q has type %q; only ecdsa-p256 (ES256) and ed25519 (EdDSA) keys sign JWTs: %w",
			path, typ, approval.ErrInvalid)
	}
	latest, err := intField(data["latest_version"])
	if err != nil {
		return transitKey{}, fmt.Errorf("transit key %q: latest_version: %w", path, err)
	}
	minVersion, err := intField(data["min_decryption_version"])
	if err != nil {
		return transitKey{}, fmt.Errorf("transit key %q: min_decryption_version: %w", path, err)
	}
	k.latest = latest
	k.versions = make(map[int]any)
	keys, _ := data["keys"].(map[string]any)
	for v, entry := range keys {
		n, err := strconv.Atoi(v)
		if err != nil {
			return transitKey{}, fmt.Errorf("transit key %q: version %q is not a number", path, v)
		}
		if n < minVersion {
			continue // Vault no longer verifies signatures of this version
		}
		fields, _ := entry.(map[string]any)
		encoded, _ := fields["public_key"].(string)
		pub, err := parsePublicKey(typ, encoded)
		if err != nil {
			return transitKey{}, fmt.Errorf("transit key %q version %d: %w", path, n, err)
		}
		k.versions[n] = pub
	}
	return k, nil
}

// parsePublicKey decodes a transit public key: PEM PKIX for ECDSA, base64
// for Ed25519.
func parsePublicKey(typ, encoded string) (any, error) {
	switch typ {
	case "ecdsa-p256":
		block, _ := pem.Decode([]byte(encoded))
		if block == nil {
			return nil, fmt.Errorf("public key is not PEM")
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("public key is a %T, want a P-256 ECDSA key", pub)
		}
		return ec, nil
	default:
		raw, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("public key is not a base64 Ed25519 key")
		}
		return ed25519.PublicKey(raw), nil
	}
}

// intField converts a Vault integer field (a JSON number) to an int; nil is 0.
func intField(v any) (int, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return 0, fmt.Errorf("not an integer: %q", v)
		}
		return int(n), nil
	case float64:
		return int(v), nil
	default:
		return 0, fmt.Errorf("unexpected type %T", v)
	}
}

// verifySignature checks a raw JWS signature of signingString with pub.
func verifySignature(alg string, pub any, signingString string, sig []byte) error {
	switch alg {
	case jwt.SigningMethodES256.Alg():
		return jwt.SigningMethodES256.Verify(signingString, sig, pub)
	case jwt.SigningMethodEdDSA.Alg():
		return jwt.SigningMethodEdDSA.Verify(signingString, sig, pub)
	default:
		return fmt.Errorf("algorithm %q not supported", alg)
	}
}

// jwk is a public JSON Web Key (RFC 7517) for a P-256 (RFC 7518) or
// Ed25519 (RFC 8037) key.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// publicJWK returns pub as a JWK with kid and alg.
func publicJWK(pub any, kid, alg string) (jwk, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		return jwk{Kty: "OKP", Crv: "Ed25519", X: b64(pub), Kid: kid, Use: "sig", Alg: alg}, nil
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes() // 0x04 || X || Y, each coordinate padded to 32 bytes
		if err != nil || len(raw) != 65 {
			return jwk{}, fmt.Errorf("encode P-256 public key: %v", err)
		}
		return jwk{Kty: "EC", Crv: "P-256", X: b64(raw[1:33]), Y: b64(raw[33:]), Kid: kid, Use: "sig", Alg: alg}, nil
	default:
		return jwk{}, fmt.Errorf("unsupported public key type %T", pub)
	}
}

// JWKS returns an RFC 7517 JWK set of every version Vault still verifies
// of every configured transit key, with kid "<key>:v<version>". After
// transit/keys/<key>/rotate, tokens signed with older versions still
// verify against it and new tokens name the new version. Relying parties
// should refetch it on an unknown kid. It returns ErrNotFound, ErrDenied or
// ErrUnavailable when Vault refuses or fails; it never returns a partial
// set.
func (t *TransitJWTIssuer) JWKS(ctx context.Context) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, name := range t.keys {
		k, err := t.readKey(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("transit jwks: %w", err)
		}
		for _, v := range slices.Sorted(maps.Keys(k.versions)) {
			j, err := publicJWK(k.versions[v], keyID(name, v), k.alg)
			if err != nil {
				return nil, fmt.Errorf("transit jwks: key %q version %d: %w", name, v, err)
			}
			set.Keys = append(set.Keys, j)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("transit jwks: encode: %w", err)
	}
	return b, nil
}
