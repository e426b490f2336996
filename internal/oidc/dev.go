package oidc

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Dev issuer constants.
const (
	// DevAudience is the "aud" of every token a DevIssuer mints; configure
	// the Verifier of `writd dev` with it.
	DevAudience = "writ-dev"
	// DevJWKSPath is where DevIssuer.Handler serves the key set, relative
	// to the issuer URL.
	DevJWKSPath = "/jwks"
	// DevTokenPath is where DevIssuer.Handler serves the token endpoint,
	// relative to the issuer URL.
	DevTokenPath = "/token"
	// DevMaxTTL is the longest lifetime of a dev token.
	DevMaxTTL = 8 * time.Hour
	// DevDefaultTTL is the lifetime of a dev token when the token request
	// names none.
	DevDefaultTTL = time.Hour
	// devMaxGroups bounds the groups of one dev token.
	devMaxGroups = 32
	// devMaxRequestSize bounds a token request body.
	devMaxRequestSize = 4 << 10
)

// devName is the shape of a dev subject or group.
var devName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// DevIssuer is a local OpenID provider with an in-memory Ed25519 key that
// mints ID tokens for any subject and groups it is asked for, without any
// authentication. It exists to make `writd dev` self-contained.
//
// DevIssuer MUST NEVER RUN OUTSIDE `writd dev`. Anyone who can reach its
// token endpoint can become any person in any approver group, which voids
// separation of duties and every approval rule. The daemon refuses to start
// it in any other mode; nothing else may construct one. Its key is generated
// on every start and never written to disk, so its tokens die with the
// process.
//
// A DevIssuer is safe for concurrent use.
type DevIssuer struct {
	issuer string
	base   string // path of the issuer URL, without a trailing slash
	key    ed25519.PrivateKey
	kid    string
	jwks   []byte
	disco  []byte
	now    func() time.Time
}

// NewDevIssuer returns a DevIssuer whose tokens carry issuerURL as "iss"
// (the URL it is served at, e.g. "http://127.0.0.1:8443") and whose clock is
// now (time.Now if nil). It generates a fresh Ed25519 key. See the DevIssuer
// warning: for `writd dev` only.
func NewDevIssuer(issuerURL string, now func() time.Time) (*DevIssuer, error) {
	u, err := url.Parse(issuerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("new dev issuer: %q must be an http(s) URL without query or fragment: %w", issuerURL, ErrInvalidConfig)
	}
	if now == nil {
		now = time.Now
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new dev issuer: generate key: %w", err)
	}
	x := base64.RawURLEncoding.EncodeToString(pub)
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`)) // RFC 7638 thumbprint
	kid := base64.RawURLEncoding.EncodeToString(sum[:])
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA",
	}}})
	if err != nil {
		return nil, fmt.Errorf("new dev issuer: encode jwks: %w", err)
	}
	disco, err := json.Marshal(map[string]any{
		"issuer":                                issuerURL,
		"jwks_uri":                              strings.TrimSuffix(issuerURL, "/") + DevJWKSPath,
		"token_endpoint":                        strings.TrimSuffix(issuerURL, "/") + DevTokenPath,
		"id_token_signing_alg_values_supported": []string{"EdDSA"},
		"subject_types_supported":               []string{"public"},
		"response_types_supported":              []string{"id_token"},
	})
	if err != nil {
		return nil, fmt.Errorf("new dev issuer: encode discovery document: %w", err)
	}
	return &DevIssuer{
		issuer: issuerURL,
		base:   strings.TrimSuffix(u.EscapedPath(), "/"),
		key:    key,
		kid:    kid,
		jwks:   jwks,
		disco:  disco,
		now:    now,
	}, nil
}

// devClaims are the claims of a dev ID token.
type devClaims struct {
	jwt.RegisteredClaims
	Groups []string `json:"groups,omitempty"`
}

// Mint returns a signed ID token for subject with groups, valid for ttl from
// now. It returns an error wrapping ErrInvalidRequest if subject or a group
// does not match ^[a-z0-9][a-z0-9._-]{0,63}$, there are more than 32 groups,
// or ttl is not in (0, DevMaxTTL].
func (d *DevIssuer) Mint(subject string, groups []string, ttl time.Duration) (string, error) {
	tok, _, err := d.mint(subject, groups, ttl)
	return tok, err
}

// mint is Mint, also returning the token's expiry.
func (d *DevIssuer) mint(subject string, groups []string, ttl time.Duration) (string, time.Time, error) {
	if !devName.MatchString(subject) {
		return "", time.Time{}, fmt.Errorf("mint dev token: subject %q: %w", subject, ErrInvalidRequest)
	}
	if len(groups) > devMaxGroups {
		return "", time.Time{}, fmt.Errorf("mint dev token: %d groups, at most %d: %w", len(groups), devMaxGroups, ErrInvalidRequest)
	}
	for _, g := range groups {
		if !devName.MatchString(g) {
			return "", time.Time{}, fmt.Errorf("mint dev token: group %q: %w", g, ErrInvalidRequest)
		}
	}
	if ttl <= 0 || ttl > DevMaxTTL {
		return "", time.Time{}, fmt.Errorf("mint dev token: ttl %s not in (0, %s]: %w", ttl, DevMaxTTL, ErrInvalidRequest)
	}
	now := d.now()
	exp := jwt.NewNumericDate(now.Add(ttl))
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, devClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    d.issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{DevAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: exp,
		},
		Groups: groups,
	})
	tok.Header["kid"] = d.kid
	s, err := tok.SignedString(d.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint dev token: sign: %w", err)
	}
	return s, exp.UTC(), nil
}

// Handler serves the discovery document, the key set and the token endpoint
// at DiscoveryPath, DevJWKSPath and DevTokenPath under the issuer URL's path.
func (d *DevIssuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(d.base+DiscoveryPath, d.DiscoveryHandler())
	mux.Handle(d.base+DevJWKSPath, d.JWKSHandler())
	mux.Handle(d.base+DevTokenPath, d.TokenHandler())
	return mux
}

// JWKSHandler serves the public key set (GET and HEAD).
func (d *DevIssuer) JWKSHandler() http.Handler {
	return staticJSON("application/jwk-set+json", d.jwks)
}

// DiscoveryHandler serves the discovery document (GET and HEAD): issuer,
// jwks_uri, token_endpoint and the supported algorithm.
func (d *DevIssuer) DiscoveryHandler() http.Handler {
	return staticJSON("application/json", d.disco)
}

// tokenRequest is the body of a POST to the token endpoint.
type tokenRequest struct {
	Subject string   `json:"subject"`
	Groups  []string `json:"groups"`
	// TTL is a Go duration ("30m"); DevDefaultTTL if empty.
	TTL string `json:"ttl"`
}

// tokenResponse is the body of a successful token response.
type tokenResponse struct {
	IDToken   string    `json:"id_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// TokenHandler mints a token for anyone who asks: POST with Content-Type
// application/json and a body like {"subject":"alice","groups":["dba"],
// "ttl":"1h"} (ttl optional, at most 8h) answers {"id_token":"…",
// "expires_at":"<RFC 3339>"}. Invalid requests get 400, other methods 405,
// other content types 415.
func (d *DevIssuer) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Requiring JSON keeps browsers from posting here cross-site
		// without a CORS preflight.
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			http.Error(w, "content type must be application/json", http.StatusUnsupportedMediaType)
			return
		}
		var req tokenRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, devMaxRequestSize))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "malformed token request", http.StatusBadRequest)
			return
		}
		ttl := DevDefaultTTL
		if req.TTL != "" {
			var err error
			if ttl, err = time.ParseDuration(req.TTL); err != nil {
				http.Error(w, "malformed ttl", http.StatusBadRequest)
				return
			}
		}
		tok, exp, err := d.mint(req.Subject, req.Groups, ttl)
		switch {
		case errors.Is(err, ErrInvalidRequest):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		body, err := json.Marshal(tokenResponse{IDToken: tok, ExpiresAt: exp})
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})
}

// staticJSON serves body with content type ct to GET and HEAD requests.
func staticJSON(ct string, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}
