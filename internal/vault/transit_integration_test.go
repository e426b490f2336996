package vault_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/vault"
	"github.com/writ-dev/writ/internal/vault/vaulttest"
)

const testIssuer = "https://writ.example.test"

// denyList records denied JWT IDs.
type denyList struct {
	mu     sync.Mutex
	denied map[string]time.Time
}

func (d *denyList) DenyJTI(_ context.Context, jti string, exp time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.denied == nil {
		d.denied = map[string]time.Time{}
	}
	d.denied[jti] = exp
	return nil
}

// transitGrant returns a grant for a JWT signed by transit key key.
func transitGrant(key string, ttl time.Duration) approval.Grant {
	now := time.Now()
	return approval.Grant{
		ID:          grantID(),
		Principal:   "spiffe://example.test/ns/prod/sa/api",
		Entitlement: "orders-api",
		Recipe:      approval.Recipe{Kind: approval.KindVaultTransitJWT, TransitKey: key, Audience: []string{"orders-api"}},
		TTL:         ttl,
		IssuedAt:    now,
		Expires:     now.Add(ttl),
	}
}

// verify parses token with a reference parser (reliability case T31)
// against the JWK set jwks, allowing only alg.
func verify(t *testing.T, jwks []byte, alg, token string) (*jwt.Token, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("parse JWKS: %v\n%s", err, jwks)
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithAudience("orders-api"), jwt.WithIssuer(testIssuer), jwt.WithExpirationRequired())
	return p.Parse(token, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) != 1 {
			return nil, fmt.Errorf("kid %q not in the JWKS", kid)
		}
		return keys[0].Key, nil
	})
}

// forge returns a JWT whose header claims kid but which transit key signer
// signed, using the root token.
func forge(t *testing.T, srv *vaulttest.Server, signer, kid string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": kid})
	now := time.Now()
	payload, _ := json.Marshal(map[string]any{
		"iss": testIssuer, "sub": "spiffe://example.test/ns/prod/sa/evil", "aud": []string{"orders-api"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "forged",
	})
	signing := enc(header) + "." + enc(payload)
	sum := sha256.Sum256([]byte(signing))
	s := srv.Write(t, "transit/sign/"+signer+"/sha2-256", map[string]any{
		"input": base64.StdEncoding.EncodeToString(sum[:]), "prehashed": true, "marshaling_algorithm": "jws",
	})
	sig := s.Data["signature"].(string)
	return signing + "." + sig[strings.LastIndex(sig, ":")+1:]
}

func TestTransitJWTIssuer_Vault(t *testing.T) {
	t.Parallel()
	srv := vaulttest.Start(t)
	srv.Mount(t, "transit", "transit")
	keyTypes := map[string]string{"writ-es256": "ecdsa-p256", "writ-eddsa": "ed25519", "other": "ecdsa-p256", "writ-rsa": "rsa-2048"}
	for key, typ := range keyTypes {
		srv.Write(t, "transit/keys/"+key, map[string]any{"type": typ})
	}
	hcl, err := vault.RecipePolicy(
		approval.Recipe{Kind: approval.KindVaultTransitJWT, TransitKey: "writ-es256"},
		approval.Recipe{Kind: approval.KindVaultTransitJWT, TransitKey: "writ-eddsa"},
		approval.Recipe{Kind: approval.KindVaultTransitJWT, TransitKey: "writ-rsa"},
	)
	if err != nil {
		t.Fatalf("RecipePolicy() err = %v", err)
	}
	srv.Policy(t, "writ-transit", hcl)
	token := srv.Token(t, "writ-transit")
	c := newClient(t, vault.ClientConfig{Address: srv.Addr, Auth: vault.AuthConfig{Token: token}}, nil)
	deny := &denyList{}
	iss, err := vault.NewTransitJWTIssuer(vault.TransitJWTConfig{Client: c, Issuer: testIssuer, Keys: []string{"writ-es256", "writ-eddsa"}, DenyList: deny})
	if err != nil {
		t.Fatalf("NewTransitJWTIssuer() err = %v", err)
	}
	issRSA, err := vault.NewTransitJWTIssuer(vault.TransitJWTConfig{Client: c, Issuer: testIssuer, Keys: []string{"writ-rsa"}})
	if err != nil {
		t.Fatalf("NewTransitJWTIssuer(rsa) err = %v", err)
	}

	tests := []struct {
		key string
		alg string
	}{
		{"writ-es256", "ES256"},
		{"writ-eddsa", "EdDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			g := transitGrant(tt.key, 5*time.Minute)
			cred, err := iss.Issue(t.Context(), g)
			if err != nil {
				t.Fatalf("Issue() err = %v", err)
			}
			if cred.Ref != (approval.CredentialRef{Kind: approval.KindVaultTransitJWT, ID: g.ID, Expires: g.Expires.Truncate(time.Second)}) {
				t.Errorf("Issue() Ref = %+v, want the grant's ID and expiry", cred.Ref)
			}
			jwks, err := iss.JWKS(t.Context())
			if err != nil {
				t.Fatalf("JWKS() err = %v", err)
			}
			old, err := verify(t, jwks, tt.alg, string(cred.Secret))
			if err != nil {
				t.Fatalf("verify issued token: %v", err)
			}
			if kid := old.Header["kid"]; kid != tt.key+":v1" {
				t.Errorf("kid = %v, want %s:v1", kid, tt.key)
			}
			claims := old.Claims.(jwt.MapClaims)
			if claims["sub"] != string(g.Principal) || claims["jti"] != g.ID || claims["ent"] != g.Entitlement {
				t.Errorf("claims = %v, want sub, jti and ent of the grant", claims)
			}
			if exp, _ := claims.GetExpirationTime(); exp == nil || exp.After(g.Expires) {
				t.Errorf("exp = %v, want ≤ the grant's expiry %v", exp, g.Expires)
			}

			// Rotate: the old token still verifies, the new one names v2.
			srv.Write(t, "transit/keys/"+tt.key+"/rotate", nil)
			cred2, err := iss.Issue(t.Context(), transitGrant(tt.key, 5*time.Minute))
			if err != nil {
				t.Fatalf("Issue() after rotation err = %v", err)
			}
			jwks, err = iss.JWKS(t.Context())
			if err != nil {
				t.Fatalf("JWKS() after rotation err = %v", err)
			}
			newTok, err := verify(t, jwks, tt.alg, string(cred2.Secret))
			if err != nil {
				t.Fatalf("verify token issued after rotation: %v", err)
			}
			if kid := newTok.Header["kid"]; kid != tt.key+":v2" {
				t.Errorf("kid after rotation = %v, want %s:v2", kid, tt.key)
			}
			if _, err := verify(t, jwks, tt.alg, string(cred.Secret)); err != nil {
				t.Errorf("token issued before rotation no longer verifies: %v", err)
			}
		})
	}

	t.Run("tokens not signed by a published key fail", func(t *testing.T) {
		t.Parallel()
		jwks, err := iss.JWKS(t.Context())
		if err != nil {
			t.Fatalf("JWKS() err = %v", err)
		}
		tests := []struct {
			name  string
			token string
		}{
			{"another transit key under its own kid", forge(t, srv, "other", "other:v1")},
			{"another transit key claiming a published kid", forge(t, srv, "other", "writ-es256:v1")},
		}
		for _, tt := range tests {
			if _, err := verify(t, jwks, "ES256", tt.token); err == nil {
				t.Errorf("%s: token verified, want a failure", tt.name)
			}
		}
	})

	t.Run("the signing keys cannot be exported", func(t *testing.T) {
		t.Parallel()
		_, err := srv.ClientWithToken(t, token).Logical().ReadWithContext(t.Context(), "transit/export/signing-key/writ-es256")
		if err == nil {
			t.Fatalf("read of the signing key with Writ's token succeeded")
		}
	})

	t.Run("refused grants", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name   string
			iss    *vault.TransitJWTIssuer
			change func(g *approval.Grant)
		}{
			{"key not configured", iss, func(g *approval.Grant) { g.Recipe.TransitKey = "other" }},
			{"key type that cannot sign jwts", issRSA, func(g *approval.Grant) { g.Recipe.TransitKey = "writ-rsa" }},
			{"no audience", iss, func(g *approval.Grant) { g.Recipe.Audience = nil }},
			{"empty audience", iss, func(g *approval.Grant) { g.Recipe.Audience = []string{""} }},
			{"token recipe", iss, func(g *approval.Grant) { g.Recipe.Kind = approval.KindVaultToken }},
			{"no principal", iss, func(g *approval.Grant) { g.Principal = "" }},
			{"expired grant", iss, func(g *approval.Grant) { g.Expires = time.Now().Add(-time.Second) }},
		}
		for _, tt := range tests {
			g := transitGrant("writ-es256", time.Minute)
			tt.change(&g)
			if _, err := tt.iss.Issue(t.Context(), g); !errors.Is(err, approval.ErrInvalid) {
				t.Errorf("%s: Issue() err = %v, want %v", tt.name, err, approval.ErrInvalid)
			}
		}
	})

	t.Run("revoke denies the jti", func(t *testing.T) {
		t.Parallel()
		cred, err := iss.Issue(t.Context(), transitGrant("writ-eddsa", time.Minute))
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		if err := iss.Revoke(t.Context(), cred.Ref); err != nil {
			t.Fatalf("Revoke() err = %v", err)
		}
		deny.mu.Lock()
		exp, ok := deny.denied[cred.Ref.ID]
		deny.mu.Unlock()
		if !ok || !exp.Equal(cred.Ref.Expires) {
			t.Errorf("deny-list has %v, %v for %s; want its expiry %v", exp, ok, cred.Ref.ID, cred.Ref.Expires)
		}
		noDeny, err := vault.NewTransitJWTIssuer(vault.TransitJWTConfig{Client: c, Issuer: testIssuer, Keys: []string{"writ-eddsa"}})
		if err != nil {
			t.Fatalf("NewTransitJWTIssuer() err = %v", err)
		}
		if err := noDeny.Revoke(t.Context(), cred.Ref); !errors.Is(err, vault.ErrNoDenyList) {
			t.Errorf("Revoke() without a deny-list err = %v, want %v", err, vault.ErrNoDenyList)
		}
	})

	// Break-glass grants are marked in the token, as the local issuer's are.
	t.Run("break-glass claim", func(t *testing.T) {
		t.Parallel()
		g := transitGrant("writ-eddsa", time.Minute)
		g.BreakGlass = true
		cred, err := iss.Issue(t.Context(), g)
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		jwks, err := iss.JWKS(t.Context())
		if err != nil {
			t.Fatalf("JWKS() err = %v", err)
		}
		tok, err := verify(t, jwks, "EdDSA", string(cred.Secret))
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if bg, _ := tok.Claims.(jwt.MapClaims)["break_glass"].(bool); !bg {
			t.Errorf("claims = %v, want break_glass true", tok.Claims)
		}
	})
}
