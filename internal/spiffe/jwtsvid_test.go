package spiffe_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
)

const testAudience = "spiffe://example.org/writd"

func TestNewJWTVerifier_Config(t *testing.T) {
	t.Parallel()
	bundles := jwtbundle.NewSet()
	tests := []struct {
		name string
		cfg  spiffe.JWTVerifierConfig
	}{
		{name: "no bundle source", cfg: spiffe.JWTVerifierConfig{TrustDomain: testTD, Audience: testAudience}},
		{name: "no trust domain", cfg: spiffe.JWTVerifierConfig{Bundles: bundles, Audience: testAudience}},
		{name: "no audience", cfg: spiffe.JWTVerifierConfig{Bundles: bundles, TrustDomain: testTD}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := spiffe.NewJWTVerifier(tt.cfg); !errors.Is(err, spiffe.ErrConfig) {
				t.Errorf("NewJWTVerifier() err = %v, want ErrConfig", err)
			}
		})
	}
}

func TestJWTVerifier_VerifyJWTSVID(t *testing.T) {
	t.Parallel()
	foreignTD := spiffeid.RequireTrustDomainFromString("foreign.example")
	trusted := spiffetest.NewJWTAuthority(t, testTD)
	untrusted := spiffetest.NewJWTAuthority(t, testTD) // right trust domain, key not in the bundle
	foreign := spiffetest.NewJWTAuthority(t, foreignTD)
	// The foreign trust domain's bundle is in the source, as with
	// federation: its tokens are still refused.
	v, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{
		Bundles:     jwtbundle.NewSet(trusted.Bundle(), foreign.Bundle()),
		TrustDomain: testTD,
		Audience:    testAudience,
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	valid := spiffetest.JWTClaims{Subject: clientID.String(), Audience: []string{testAudience}, Expiry: now.Add(5 * time.Minute), IssuedAt: now}
	with := func(f func(*spiffetest.JWTClaims)) spiffetest.JWTClaims { c := valid; f(&c); return c }

	tests := []struct {
		name    string
		token   string
		wantID  spiffeid.ID
		wantErr error // nil means valid
	}{
		{name: "valid token", token: trusted.Mint(t, valid), wantID: clientID},
		{name: "audience among several", token: trusted.Mint(t, with(func(c *spiffetest.JWTClaims) { c.Audience = []string{"other", testAudience} })), wantID: clientID},
		{name: "wrong audience", token: trusted.Mint(t, with(func(c *spiffetest.JWTClaims) { c.Audience = []string{"spiffe://example.org/other"} })), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "no audience", token: trusted.Mint(t, with(func(c *spiffetest.JWTClaims) { c.Audience = nil })), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "expired", token: trusted.Mint(t, with(func(c *spiffetest.JWTClaims) { c.Expiry = now.Add(-5 * time.Minute) })), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "no expiry", token: trusted.Mint(t, with(func(c *spiffetest.JWTClaims) { c.Expiry = time.Time{} })), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "issued in the future", token: trusted.Mint(t, with(func(c *spiffetest.JWTClaims) { c.IssuedAt = now.Add(time.Hour) })), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "signed by a key outside the bundle", token: untrusted.Mint(t, valid), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "foreign trust domain", token: foreign.Mint(t, with(func(c *spiffetest.JWTClaims) { c.Subject = "spiffe://foreign.example/api" })), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "foreign key claiming our trust domain", token: foreign.Mint(t, valid), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "subject not a SPIFFE ID", token: trusted.Mint(t, with(func(c *spiffetest.JWTClaims) { c.Subject = "alice" })), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "subject changed after signing", token: tamper(t, trusted.Mint(t, valid)), wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "unsigned (alg none)", token: "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(trusted.Mint(t, valid), ".")[1] + ".", wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "not a JWT", token: "hello", wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "empty", token: "", wantErr: spiffe.ErrInvalidJWTSVID},
		{name: "larger than the limit", token: strings.Repeat("a", spiffe.MaxJWTSVIDLen+1), wantErr: spiffe.ErrInvalidJWTSVID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := v.VerifyJWTSVID(context.Background(), tt.token)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("VerifyJWTSVID() = %v, %v; want error %v", id, err, tt.wantErr)
				}
				if tt.token != "" && strings.Contains(err.Error(), tt.token) {
					t.Errorf("VerifyJWTSVID() error contains the token: %v", err)
				}
				return
			}
			if err != nil || id != tt.wantID {
				t.Errorf("VerifyJWTSVID() = %v, %v; want %v, nil", id, err, tt.wantID)
			}
		})
	}
}

func TestJWTVerifier_CanceledContext(t *testing.T) {
	t.Parallel()
	a := spiffetest.NewJWTAuthority(t, testTD)
	v, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{Bundles: a.Bundle(), TrustDomain: testTD, Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	token := a.Mint(t, spiffetest.JWTClaims{Subject: clientID.String(), Audience: []string{testAudience}, Expiry: time.Now().Add(time.Minute)})
	if _, err := v.VerifyJWTSVID(ctx, token); !errors.Is(err, context.Canceled) {
		t.Errorf("VerifyJWTSVID(canceled) err = %v, want context.Canceled", err)
	}
}

// tamper replaces the subject in the payload of a signed token with
// otherID, keeping the header and signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["sub"] = otherID.String()
	if payload, err = json.Marshal(claims); err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}
