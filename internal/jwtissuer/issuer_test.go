package jwtissuer_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/jwtissuer"
)

func TestIssuer_Issue_ReferenceVerifierAccepts(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			iss, _ := newIssuer(t, alg, epoch)
			g := testGrant(epoch, 15*time.Minute)
			cred, err := iss.Issue(t.Context(), g)
			if err != nil {
				t.Fatalf("Issue() err = %v", err)
			}
			wantRef := approval.CredentialRef{Kind: approval.KindJWT, ID: g.ID, Expires: g.Expires}
			if diff := cmp.Diff(wantRef, cred.Ref); diff != "" {
				t.Errorf("Issue() Ref mismatch (-want +got):\n%s", diff)
			}
			if !cred.IssuedAt.Equal(epoch) {
				t.Errorf("Issue() IssuedAt = %v, want %v", cred.IssuedAt, epoch)
			}

			v := verifier{keys: fetchJWKS(t, iss), audience: testAudience, issuer: testIssuer, now: epoch.Add(time.Minute)}
			tok, c, err := v.parse(string(cred.Secret))
			if err != nil {
				t.Fatalf("reference verifier err = %v, want nil", err)
			}
			type view struct {
				Alg, Typ, Kid      string
				Iss, Sub, Jti, Ent string
				Aud                []string
				Iat, Nbf, Exp      time.Time
			}
			got := view{
				Alg: tok.Method.Alg(), Typ: tok.Header["typ"].(string), Kid: tok.Header["kid"].(string),
				Iss: c.Issuer, Sub: c.Subject, Jti: c.ID, Ent: c.Ent, Aud: c.Audience,
				Iat: c.IssuedAt.Time, Nbf: c.NotBefore.Time, Exp: c.ExpiresAt.Time,
			}
			want := view{
				Alg: alg, Typ: "JWT", Kid: iss.KeyID(),
				Iss: testIssuer, Sub: string(g.Principal), Jti: g.ID, Ent: g.Entitlement, Aud: []string{testAudience},
				Iat: epoch, Nbf: epoch, Exp: g.Expires,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("verified token mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIssuer_Issue_ReferenceVerifierRejects(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			iss, keyFile := newIssuer(t, alg, epoch)
			g := testGrant(epoch, 15*time.Minute)
			valid := mustIssue(t, iss, g)
			keys := fetchJWKS(t, iss)
			inWindow := epoch.Add(time.Minute)
			afterExpiry := g.Expires.Add(time.Second)

			// A second issuer with its own key: its kid is unknown to the verifier.
			stranger, strangerKeyFile := newIssuer(t, alg, epoch)
			// The same key but another iss claim.
			otherIss, err := jwtissuer.New(jwtissuer.Config{KeyFile: keyFile, Algorithm: alg, Issuer: "https://evil.example.test", Now: func() time.Time { return epoch }})
			if err != nil {
				t.Fatalf("New(other issuer) err = %v", err)
			}
			otherAud := g
			otherAud.Recipe.Audience = []string{"https://other.example.test"}

			tests := []struct {
				name  string
				token func(t *testing.T) string
				now   time.Time
				aud   string
				want  []error // the error must match at least one
			}{
				{
					name:  "tampered signature",
					token: func(t *testing.T) string { return flipSignatureBit(t, valid) },
					now:   inWindow,
					want:  []error{jwt.ErrTokenSignatureInvalid},
				},
				{
					name: "tampered payload",
					token: func(t *testing.T) string {
						return editPayload(t, valid, func(c map[string]any) { c["sub"] = "spiffe://example.test/ns/prod/sa/attacker" })
					},
					now:  inWindow,
					want: []error{jwt.ErrTokenSignatureInvalid},
				},
				{
					name: "tampered expiry",
					token: func(t *testing.T) string {
						return editPayload(t, valid, func(c map[string]any) { c["exp"] = g.Expires.Add(time.Hour).Unix() })
					},
					now:  afterExpiry,
					want: []error{jwt.ErrTokenSignatureInvalid},
				},
				{
					name:  "expired",
					token: func(*testing.T) string { return valid },
					now:   afterExpiry,
					want:  []error{jwt.ErrTokenExpired},
				},
				{
					// CVE-2024-51744: the signature error must not hide behind expiry.
					name:  "tampered signature and expired reports the signature",
					token: func(t *testing.T) string { return flipSignatureBit(t, valid) },
					now:   afterExpiry,
					want:  []error{jwt.ErrTokenSignatureInvalid},
				},
				{
					name:  "before issue time",
					token: func(*testing.T) string { return valid },
					now:   epoch.Add(-time.Minute),
					want:  []error{jwt.ErrTokenNotValidYet, jwt.ErrTokenUsedBeforeIssued},
				},
				{
					name:  "verifier expects another audience",
					token: func(*testing.T) string { return valid },
					now:   inWindow,
					aud:   "https://other.example.test",
					want:  []error{jwt.ErrTokenInvalidAudience},
				},
				{
					name:  "token for another audience",
					token: func(t *testing.T) string { return mustIssue(t, iss, otherAud) },
					now:   inWindow,
					want:  []error{jwt.ErrTokenInvalidAudience},
				},
				{
					name:  "wrong issuer",
					token: func(t *testing.T) string { return mustIssue(t, otherIss, g) },
					now:   inWindow,
					want:  []error{jwt.ErrTokenInvalidIssuer},
				},
				{
					name: "alg none",
					token: func(t *testing.T) string {
						return signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, iss.KeyID(), valid)
					},
					now:  inWindow,
					want: []error{jwt.ErrTokenSignatureInvalid},
				},
				{
					name: "HS256 keyed with the public key bytes",
					token: func(t *testing.T) string {
						return signWith(t, jwt.SigningMethodHS256, publicKeyBytes(t, iss), iss.KeyID(), valid)
					},
					now:  inWindow,
					want: []error{jwt.ErrTokenSignatureInvalid},
				},
				{
					name: "HS256 keyed with the JWKS document",
					token: func(t *testing.T) string {
						set, err := iss.JWKS()
						if err != nil {
							t.Fatalf("JWKS() err = %v", err)
						}
						return signWith(t, jwt.SigningMethodHS256, set, iss.KeyID(), valid)
					},
					now:  inWindow,
					want: []error{jwt.ErrTokenSignatureInvalid},
				},
				{
					name:  "unknown kid",
					token: func(t *testing.T) string { return mustIssue(t, stranger, g) },
					now:   inWindow,
					want:  []error{jwt.ErrTokenUnverifiable},
				},
				{
					name: "another key claiming our kid",
					token: func(t *testing.T) string {
						method := jwt.GetSigningMethod(alg)
						return signWith(t, method, readPrivateKey(t, strangerKeyFile), iss.KeyID(), valid)
					},
					now:  inWindow,
					want: []error{jwt.ErrTokenSignatureInvalid},
				},
				{
					name:  "malformed",
					token: func(*testing.T) string { return strings.Join(strings.Split(valid, ".")[:2], ".") },
					now:   inWindow,
					want:  []error{jwt.ErrTokenMalformed},
				},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					aud := tt.aud
					if aud == "" {
						aud = testAudience
					}
					v := verifier{keys: keys, audience: aud, issuer: testIssuer, now: tt.now}
					_, _, err := v.parse(tt.token(t))
					if err == nil {
						t.Fatalf("reference verifier err = nil, want one of %v", tt.want)
					}
					if !isAny(err, tt.want...) {
						t.Errorf("reference verifier err = %v, want one of %v", err, tt.want)
					}
				})
			}
		})
	}
}

func TestIssuer_Issue_InvalidGrant(t *testing.T) {
	t.Parallel()
	iss, _ := newIssuer(t, jwtissuer.AlgEdDSA, epoch)
	tests := []struct {
		name   string
		change func(g *approval.Grant)
	}{
		{"vault recipe", func(g *approval.Grant) { g.Recipe = approval.Recipe{Kind: approval.KindVaultToken, Role: "r"} }},
		{"no recipe kind", func(g *approval.Grant) { g.Recipe.Kind = "" }},
		{"no audience", func(g *approval.Grant) { g.Recipe.Audience = nil }},
		{"empty audience value", func(g *approval.Grant) { g.Recipe.Audience = []string{testAudience, ""} }},
		{"no grant ID", func(g *approval.Grant) { g.ID = "" }},
		{"no principal", func(g *approval.Grant) { g.Principal = "" }},
		{"no expiry", func(g *approval.Grant) { g.Expires = time.Time{} }},
		{"already expired", func(g *approval.Grant) { g.IssuedAt = epoch.Add(-time.Hour); g.Expires = epoch }},
		{"expiry before issue time", func(g *approval.Grant) { g.IssuedAt = epoch.Add(30 * time.Minute) }},
		{"shorter than a whole second", func(g *approval.Grant) {
			g.IssuedAt = epoch.Add(100 * time.Millisecond)
			g.Expires = epoch.Add(900 * time.Millisecond)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := testGrant(epoch, 15*time.Minute)
			tt.change(&g)
			cred, err := iss.Issue(t.Context(), g)
			if !errors.Is(err, approval.ErrInvalid) {
				t.Fatalf("Issue() err = %v, want %v", err, approval.ErrInvalid)
			}
			if cred.Secret != "" {
				t.Errorf("Issue() returned a secret with an error")
			}
		})
	}
}

func TestIssuer_Issue_ContextCanceled(t *testing.T) {
	t.Parallel()
	iss, _ := newIssuer(t, jwtissuer.AlgEdDSA, epoch)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := iss.Issue(ctx, testGrant(epoch, time.Minute)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Issue(canceled) err = %v, want %v", err, context.Canceled)
	}
}

func TestIssuer_Issue_ZeroIssuedAtUsesNow(t *testing.T) {
	t.Parallel()
	iss, _ := newIssuer(t, jwtissuer.AlgEdDSA, epoch)
	g := testGrant(epoch, 10*time.Minute)
	g.IssuedAt = time.Time{}
	v := verifier{keys: fetchJWKS(t, iss), audience: testAudience, issuer: testIssuer, now: epoch}
	_, c, err := v.parse(mustIssue(t, iss, g))
	if err != nil {
		t.Fatalf("reference verifier err = %v", err)
	}
	if !c.IssuedAt.Equal(epoch) || !c.NotBefore.Equal(epoch) {
		t.Errorf("iat, nbf = %v, %v, want both %v", c.IssuedAt, c.NotBefore, epoch)
	}
}

// TestIssuer_Issue_NeverOutlivesGrant checks, over many grants with arbitrary
// sub-second instants and lengths, that either Issue fails with ErrInvalid or
// the token's exp is after its iat and not after the grant's expiry.
func TestIssuer_Issue_NeverOutlivesGrant(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			var now time.Time
			iss, err := jwtissuer.New(jwtissuer.Config{
				KeyFile: filepath.Join(t.TempDir(), "k.pem"), Algorithm: alg, Issuer: testIssuer,
				Now: func() time.Time { return now },
			})
			if err != nil {
				t.Fatalf("New() err = %v", err)
			}
			rng := rand.New(rand.NewPCG(7, 31))
			issued := 0
			for range 2000 {
				decided := epoch.Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
				ttl := time.Duration(rng.Int64N(int64(3 * time.Second)))
				if rng.IntN(2) == 0 {
					ttl = time.Duration(rng.Int64N(int64(12 * time.Hour)))
				}
				now = decided.Add(time.Duration(rng.Int64N(int64(ttl) + 1)))
				g := testGrant(decided, ttl)
				cred, err := iss.Issue(t.Context(), g)
				if err != nil {
					if !errors.Is(err, approval.ErrInvalid) {
						t.Fatalf("Issue(ttl %s) err = %v, want nil or ErrInvalid", ttl, err)
					}
					continue
				}
				issued++
				c := unverifiedClaims(t, string(cred.Secret))
				exp, iat := c.ExpiresAt.Time, c.IssuedAt.Time
				if exp.After(g.Expires) {
					t.Fatalf("grant decided %s ttl %s: exp %s is after the grant's expiry %s", decided.Format(time.RFC3339Nano), ttl, exp, g.Expires)
				}
				if !exp.After(iat) {
					t.Fatalf("grant decided %s ttl %s: exp %s is not after iat %s", decided.Format(time.RFC3339Nano), ttl, exp, iat)
				}
				if !cred.Ref.Expires.Equal(exp) {
					t.Fatalf("Ref.Expires = %s, want the token's exp %s", cred.Ref.Expires, exp)
				}
			}
			if issued < 500 {
				t.Fatalf("only %d of 2000 random grants were issued; the generator is off", issued)
			}
		})
	}
}

// memDenyList records denied JWT IDs.
type memDenyList struct {
	mu     sync.Mutex
	denied map[string]time.Time
	err    error
}

func (m *memDenyList) DenyJTI(_ context.Context, jti string, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if m.denied == nil {
		m.denied = map[string]time.Time{}
	}
	m.denied[jti] = exp
	return nil
}

func TestIssuer_Revoke(t *testing.T) {
	t.Parallel()
	live := approval.CredentialRef{Kind: approval.KindJWT, ID: "grant-0001", Expires: epoch.Add(time.Minute)}
	tests := []struct {
		name       string
		deny       *memDenyList
		ref        approval.CredentialRef
		wantErr    error
		wantDenied bool
	}{
		{name: "live token goes on the deny-list until it expires", deny: &memDenyList{}, ref: live, wantDenied: true},
		{name: "expired token needs nothing", deny: &memDenyList{}, ref: approval.CredentialRef{Kind: approval.KindJWT, ID: "old", Expires: epoch}},
		{name: "no deny-list fails instead of pretending", ref: live, wantErr: jwtissuer.ErrNoDenyList},
		{name: "deny-list failure is reported", deny: &memDenyList{err: errors.New("disk full")}, ref: live, wantErr: errAnyErr},
		{name: "not a JWT", deny: &memDenyList{}, ref: approval.CredentialRef{Kind: approval.KindVaultToken, ID: "acc"}, wantErr: approval.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := jwtissuer.Config{KeyFile: filepath.Join(t.TempDir(), "k.pem"), Issuer: testIssuer, Now: func() time.Time { return epoch }}
			if tt.deny != nil {
				cfg.DenyList = tt.deny
			}
			iss, err := jwtissuer.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = iss.Revoke(t.Context(), tt.ref)
			switch {
			case tt.wantErr == errAnyErr:
				if err == nil {
					t.Fatal("Revoke() err = nil, want an error")
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Revoke() err = %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("Revoke() err = %v", err)
			}
			if tt.deny != nil {
				_, denied := tt.deny.denied[tt.ref.ID]
				if denied != tt.wantDenied {
					t.Errorf("jti %q on deny-list = %v, want %v", tt.ref.ID, denied, tt.wantDenied)
				}
			}
		})
	}
}

var errAnyErr = errors.New("any error")

func TestRevokedHandler(t *testing.T) {
	t.Parallel()
	list := func(context.Context, time.Time) ([]jwtissuer.Revoked, error) {
		return []jwtissuer.Revoked{{JTI: "g_1", Expires: epoch.Add(time.Minute)}}, nil
	}
	rec := httptest.NewRecorder()
	jwtissuer.RevokedHandler(list, func() time.Time { return epoch }).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"jti":"g_1"`) {
		t.Errorf("GET = %d %s", rec.Code, rec.Body.String())
	}
	failing := func(context.Context, time.Time) ([]jwtissuer.Revoked, error) { return nil, errors.New("boom") }
	rec = httptest.NewRecorder()
	jwtissuer.RevokedHandler(failing, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("GET with a failing list = %d, want 503 (never an empty list)", rec.Code)
	}
}

// splitToken returns the three parts of a compact JWS.
func splitToken(t *testing.T, token string) [3]string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	return [3]string(parts)
}

// flipSignatureBit flips one bit of the decoded signature.
func flipSignatureBit(t *testing.T, token string) string {
	t.Helper()
	p := splitToken(t, token)
	sig, err := base64.RawURLEncoding.DecodeString(p[2])
	if err != nil {
		t.Fatalf("decode signature: %v", err)
	}
	sig[len(sig)/2] ^= 0x01
	return p[0] + "." + p[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// editPayload rewrites the claims and keeps the original signature.
func editPayload(t *testing.T, token string, edit func(map[string]any)) string {
	t.Helper()
	p := splitToken(t, token)
	raw, err := base64.RawURLEncoding.DecodeString(p[1])
	if err != nil {
		t.Fatalf("decode payload: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("unmarshal payload: %v", err)
	}
	edit(c)
	raw, err = json.Marshal(c)
	if err != nil {
		t.Fatalf("marshal payload: %v", err)
	}
	return p[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + p[2]
}

// signWith re-signs the claims of token with method and key under kid.
func signWith(t *testing.T, method jwt.SigningMethod, key any, kid, token string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, unverifiedClaims(t, token))
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign with %s: %v", method.Alg(), err)
	}
	return s
}

// unverifiedClaims decodes the claims of token without verifying it.
func unverifiedClaims(t testing.TB, token string) *verifiedClaims {
	t.Helper()
	var c verifiedClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		t.Fatalf("ParseUnverified() err = %v", err)
	}
	return &c
}

// publicKeyBytes returns the raw public key of iss as published in its JWKS:
// x for Ed25519, x||y for P-256.
func publicKeyBytes(t *testing.T, iss *jwtissuer.Issuer) []byte {
	t.Helper()
	set, err := iss.JWKS()
	if err != nil {
		t.Fatalf("JWKS() err = %v", err)
	}
	var doc struct{ Keys []struct{ X, Y string } }
	if err := json.Unmarshal(set, &doc); err != nil || len(doc.Keys) != 1 {
		t.Fatalf("unmarshal JWKS %s: %v", set, err)
	}
	x, errX := base64.RawURLEncoding.DecodeString(doc.Keys[0].X)
	y, errY := base64.RawURLEncoding.DecodeString(doc.Keys[0].Y)
	if err := errors.Join(errX, errY); err != nil {
		t.Fatalf("decode JWKS coordinates: %v", err)
	}
	b := append(x, y...)
	return b
}

// readPrivateKey parses the PKCS#8 PEM key file at path.
func readPrivateKey(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read key file: %v", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("key file %s is not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("parse key file: %v", err)
	}
	return k
}

func TestIssuer_Issue_MarksBreakGlass(t *testing.T) {
	t.Parallel()
	iss, _ := newIssuer(t, jwtissuer.AlgEdDSA, epoch)
	for _, bg := range []bool{false, true} {
		g := testGrant(epoch, time.Minute)
		g.BreakGlass = bg
		cred, err := iss.Issue(t.Context(), g)
		if err != nil {
			t.Fatal(err)
		}
		payload, err := base64.RawURLEncoding.DecodeString(splitToken(t, string(cred.Secret))[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		if got, _ := claims["break_glass"].(bool); got != bg {
			t.Errorf("break_glass claim = %v (claims %v), want %v", claims["break_glass"], claims, bg)
		}
	}
}
