package oidc_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/oidc"
)

func TestVerifier_Verify(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t)
	v := newVerifier(t, idp.config())
	rsaSign := func(t *testing.T, edit func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodRS256, rsaKID, rsaKey(), idp.claims(edit))
	}
	alice := oidc.Person{
		Issuer:  idp.issuer,
		Subject: "alice",
		Email:   "alice@example.test",
		Groups:  []string{"dba", "oncall"},
		Expires: epoch.Add(time.Hour),
	}

	tests := []struct {
		name    string
		token   func(t *testing.T) string
		want    oidc.Person
		wantErr error // besides ErrUnauthenticated; nil means accepted
	}{
		{
			name:  "valid token with groups is accepted",
			token: func(t *testing.T) string { return rsaSign(t, nil) },
			want:  alice,
		},
		{
			name: "absent groups claim means no groups",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) { delete(c, "groups"); delete(c, "email") })
			},
			want: oidc.Person{Issuer: idp.issuer, Subject: "alice", Expires: epoch.Add(time.Hour)},
		},
		{
			name: "token expired within the leeway is accepted",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) { c["exp"] = epoch.Add(-10 * time.Second).Unix() })
			},
			want: func() oidc.Person { p := alice; p.Expires = epoch.Add(-10 * time.Second); return p }(),
		},
		{
			name: "expired token is rejected",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) { c["exp"] = epoch.Add(-time.Minute).Unix() })
			},
			wantErr: jwt.ErrTokenExpired,
		},
		{
			name:    "token without exp is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { delete(c, "exp") }) },
			wantErr: jwt.ErrTokenRequiredClaimMissing,
		},
		{
			name: "token issued in the future is rejected",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) {
					c["iat"] = epoch.Add(time.Hour).Unix()
					c["exp"] = epoch.Add(2 * time.Hour).Unix()
				})
			},
			wantErr: jwt.ErrTokenUsedBeforeIssued,
		},
		{
			name:    "wrong audience is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["aud"] = "another-client" }) },
			wantErr: jwt.ErrTokenInvalidAudience,
		},
		{
			name: "wrong issuer is rejected",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) { c["iss"] = "https://evil.example.test" })
			},
			wantErr: jwt.ErrTokenInvalidIssuer,
		},
		{
			name: "alg none is rejected",
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodNone, rsaKID, jwt.UnsafeAllowNoneSignatureType, idp.claims(nil))
			},
			wantErr: jwt.ErrTokenSignatureInvalid,
		},
		{
			name: "HS256 signed with the public key bytes is rejected (key confusion)",
			token: func(t *testing.T) string {
				der, err := x509.MarshalPKIXPublicKey(&rsaKey().PublicKey)
				if err != nil {
					t.Fatalf("marshal public key: %v", err)
				}
				pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
				return sign(t, jwt.SigningMethodHS256, rsaKID, pubPEM, idp.claims(nil))
			},
			wantErr: jwt.ErrTokenSignatureInvalid,
		},
		{
			name: "unknown kid is rejected",
			token: func(t *testing.T) string {
				return sign(t, jwt.SigningMethodES256, "rogue", newECKey(t), idp.claims(nil))
			},
			wantErr: jwt.ErrTokenUnverifiable,
		},
		{
			name: "tampered signature is rejected",
			token: func(t *testing.T) string {
				tok := rsaSign(t, nil)
				i := strings.LastIndexByte(tok, '.') + 1
				flipped := byte('A')
				if tok[i] == 'A' {
					flipped = 'B'
				}
				return tok[:i] + string(flipped) + tok[i+1:]
			},
			wantErr: jwt.ErrTokenSignatureInvalid,
		},
		{
			name: "tampered payload is rejected",
			token: func(t *testing.T) string {
				parts := strings.Split(rsaSign(t, nil), ".")
				forged, err := json.Marshal(idp.claims(func(c jwt.MapClaims) { c["groups"] = []string{"admins"} }))
				if err != nil {
					t.Fatalf("marshal claims: %v", err)
				}
				parts[1] = base64.RawURLEncoding.EncodeToString(forged)
				return strings.Join(parts, ".")
			},
			wantErr: jwt.ErrTokenSignatureInvalid,
		},
		{
			name:    "missing sub is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { delete(c, "sub") }) },
			wantErr: oidc.ErrMissingSubject,
		},
		{
			name:    "empty sub is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["sub"] = "" }) },
			wantErr: oidc.ErrMissingSubject,
		},
		{
			name:    "non-string sub is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["sub"] = 42 }) },
			wantErr: oidc.ErrBadSubject,
		},
		{
			name: "sub longer than 255 bytes is rejected",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) { c["sub"] = strings.Repeat("a", 256) })
			},
			wantErr: oidc.ErrBadSubject,
		},
		{
			name: "T43 sub with an ANSI escape is rejected",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) { c["sub"] = "alice\x1b[2J\x1b[H APPROVED" })
			},
			wantErr: oidc.ErrBadSubject,
		},
		{
			name:    "T43 sub with a bidi override is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["sub"] = "alice\u202e" }) },
			wantErr: oidc.ErrBadSubject,
		},
		{
			name:    "T43 sub with a zero-width space is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["sub"] = "ali\u200bce" }) },
			wantErr: oidc.ErrBadSubject,
		},
		{
			name:    "T43 sub with a newline is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["sub"] = "alice\nroot" }) },
			wantErr: oidc.ErrBadSubject,
		},
		{
			name: "T43 group with an ANSI escape is rejected",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) { c["groups"] = []any{"dba\x1b[0m"} })
			},
			wantErr: oidc.ErrBadGroups,
		},
		{
			name: "T43 group with a bidi isolate is rejected",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) { c["groups"] = []any{"\u2066dba"} })
			},
			wantErr: oidc.ErrBadGroups,
		},
		{
			name:    "T43 email with a control character is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["email"] = "a@b.example\x07" }) },
			wantErr: oidc.ErrBadEmail,
		},
		{
			name: "validly signed token over 8 KiB is rejected",
			token: func(t *testing.T) string {
				return rsaSign(t, func(c jwt.MapClaims) { c["pad"] = strings.Repeat("a", oidc.MaxTokenSize) })
			},
			wantErr: oidc.ErrTokenTooLarge,
		},
		{
			name:    "groups claim that is a string is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["groups"] = "dba" }) },
			wantErr: oidc.ErrBadGroups,
		},
		{
			name:    "groups claim with a non-string member is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["groups"] = []any{"dba", 7} }) },
			wantErr: oidc.ErrBadGroups,
		},
		{
			name:    "non-string email is rejected",
			token:   func(t *testing.T) string { return rsaSign(t, func(c jwt.MapClaims) { c["email"] = true }) },
			wantErr: oidc.ErrBadEmail,
		},
		{
			name:    "empty token is rejected",
			token:   func(*testing.T) string { return "" },
			wantErr: oidc.ErrEmptyToken,
		},
		{
			name:    "garbage is rejected as malformed",
			token:   func(*testing.T) string { return "not-a.jwt" },
			wantErr: jwt.ErrTokenMalformed,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := v.Verify(t.Context(), tc.token(t))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify() err = %v, want nil", err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("Verify() person mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, oidc.ErrUnauthenticated) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify() err = %v, want ErrUnauthenticated caused by %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(oidc.Person{}, got); diff != "" {
				t.Errorf("Verify() returned a person with an error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerifier_Verify_ErrorHidesDetails(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t)
	v := newVerifier(t, idp.config())
	tok := sign(t, jwt.SigningMethodES256, "secret-looking-kid", newECKey(t), idp.claims(nil))

	_, err := v.Verify(t.Context(), tok)
	if !errors.Is(err, oidc.ErrUnauthenticated) {
		t.Fatalf("Verify() err = %v, want ErrUnauthenticated", err)
	}
	if msg := err.Error(); strings.Contains(msg, "secret-looking-kid") || strings.Contains(msg, tok) {
		t.Errorf("Verify() err = %q, want a short reason without token details", msg)
	}
}

func TestVerifier_Verify_RefreshesKeysOnUnknownKID(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t)
	v := newVerifier(t, idp.config())
	if got := idp.fetches.Load(); got != 1 {
		t.Fatalf("key set fetches after New = %d, want 1", got)
	}

	// The provider rotates in a new key; the first token signed with it
	// triggers a refresh and verifies.
	rotated := newECKey(t)
	idp.addEC(t, "ec-2", &rotated.PublicKey)
	if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodES256, "ec-2", rotated, idp.claims(nil))); err != nil {
		t.Fatalf("Verify(token with rotated kid) err = %v, want nil", err)
	}
	if got := idp.fetches.Load(); got != 2 {
		t.Fatalf("key set fetches after rotation = %d, want 2", got)
	}

	// Another unknown kid within the rate limit fails at once, without
	// fetching.
	start := time.Now()
	_, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodES256, "ec-3", newECKey(t), idp.claims(nil)))
	if !errors.Is(err, oidc.ErrUnauthenticated) {
		t.Fatalf("Verify(second unknown kid) err = %v, want ErrUnauthenticated", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Verify(second unknown kid) took %s, want an immediate rejection", elapsed)
	}
	if got := idp.fetches.Load(); got != 2 {
		t.Errorf("key set fetches after rate-limited kid = %d, want 2", got)
	}
}

func TestNew_InvalidConfig(t *testing.T) {
	t.Parallel()
	valid := oidc.Config{Issuer: "https://idp.example.test", Audience: testAudience}
	tests := []struct {
		name string
		edit func(*oidc.Config)
	}{
		{"missing issuer", func(c *oidc.Config) { c.Issuer = "" }},
		{"missing audience", func(c *oidc.Config) { c.Audience = "" }},
		{"plain http issuer on a remote host", func(c *oidc.Config) { c.Issuer = "http://idp.example.test" }},
		{"issuer with a fragment", func(c *oidc.Config) { c.Issuer = "https://idp.example.test#x" }},
		{"plain http jwks url on a remote host", func(c *oidc.Config) { c.JWKSURL = "http://idp.example.test/keys" }},
		{"alg none", func(c *oidc.Config) { c.Algorithms = []string{"RS256", "none"} }},
		{"HS256", func(c *oidc.Config) { c.Algorithms = []string{"HS256"} }},
		{"HS512", func(c *oidc.Config) { c.Algorithms = []string{"ES256", "HS512"} }},
		{"unknown algorithm", func(c *oidc.Config) { c.Algorithms = []string{"rs256"} }},
		{"negative leeway", func(c *oidc.Config) { c.Leeway = -time.Second }},
		{"leeway above 60s", func(c *oidc.Config) { c.Leeway = 61 * time.Second }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			tc.edit(&cfg)
			v, err := oidc.New(t.Context(), cfg)
			if !errors.Is(err, oidc.ErrInvalidConfig) {
				if v != nil {
					v.Close()
				}
				t.Fatalf("New() err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestNew_Discovery(t *testing.T) {
	t.Parallel()
	t.Run("discovery naming another issuer fails", func(t *testing.T) {
		t.Parallel()
		idp := newFakeIdP(t)
		idp.setDiscoIssuer("https://evil.example.test")
		if _, err := oidc.New(t.Context(), idp.config()); !errors.Is(err, oidc.ErrDiscovery) {
			t.Fatalf("New() err = %v, want ErrDiscovery", err)
		}
	})
	t.Run("issuer without discovery document fails", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		cfg := oidc.Config{Issuer: srv.URL, Audience: testAudience, HTTPClient: srv.Client()}
		if _, err := oidc.New(t.Context(), cfg); !errors.Is(err, oidc.ErrDiscovery) {
			t.Fatalf("New() err = %v, want ErrDiscovery", err)
		}
	})
	t.Run("unreachable key set fails", func(t *testing.T) {
		t.Parallel()
		idp := newFakeIdP(t)
		cfg := idp.config()
		cfg.JWKSURL = idp.issuer + "/no-such-keys"
		if _, err := oidc.New(t.Context(), cfg); !errors.Is(err, oidc.ErrDiscovery) {
			t.Fatalf("New() err = %v, want ErrDiscovery", err)
		}
	})
	t.Run("explicit key set URL skips discovery", func(t *testing.T) {
		t.Parallel()
		idp := newFakeIdP(t)
		idp.setDiscoIssuer("https://evil.example.test") // would fail if read
		cfg := idp.config()
		cfg.JWKSURL = idp.issuer + "/keys"
		v := newVerifier(t, cfg)
		if _, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodRS256, rsaKID, rsaKey(), idp.claims(nil))); err != nil {
			t.Fatalf("Verify() err = %v, want nil", err)
		}
	})
	t.Run("canceled context fails", func(t *testing.T) {
		t.Parallel()
		idp := newFakeIdP(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := oidc.New(ctx, idp.config()); !errors.Is(err, context.Canceled) {
			t.Fatalf("New() err = %v, want context.Canceled", err)
		}
	})
}

func TestPerson_Principal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		person oidc.Person
		want   approval.Principal
	}{
		{"issuer and subject", oidc.Person{Issuer: "https://idp.example.test", Subject: "alice"}, "oidc:https://idp.example.test#alice"},
		{"subject with a hash", oidc.Person{Issuer: "https://idp.example.test/realms/x", Subject: "a#b"}, "oidc:https://idp.example.test/realms/x#a#b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.person.Principal(); got != tc.want {
				t.Errorf("Principal() = %q, want %q", got, tc.want)
			}
		})
	}
}
