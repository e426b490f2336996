package vault_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/vault/api"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/vault"
	"github.com/writ-dev/writ/internal/vault/vaulttest"
)

// Roles every integration test server has.
const (
	roleApp   = "app"   // no TTL limit of its own
	roleShort = "short" // token_explicit_max_ttl 1m
)

// env is a Vault dev server with the test roles and an issuer using a token
// that holds exactly vault.IssuerPolicy for them.
type env struct {
	srv *vaulttest.Server
	iss *vault.TokenIssuer
	// token is the issuer's own Vault token.
	token string
}

// setup starts Vault and prepares roles, the issuer policy and token.
func setup(t *testing.T) *env {
	t.Helper()
	srv := vaulttest.Start(t)
	srv.TokenRole(t, roleApp, 0)
	srv.TokenRole(t, roleShort, time.Minute)
	srv.Policy(t, "writ-issuer", vault.IssuerPolicy(roleApp, roleShort, "periodic"))
	token := srv.Token(t, "writ-issuer")
	return &env{srv: srv, iss: newIssuer(t, srv.Addr, token, nil), token: token}
}

// grantID returns a fresh grant ID.
func grantID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "grant-" + hex.EncodeToString(b)
}

// tokensOfGrant counts the live tokens whose metadata names grantID.
func tokensOfGrant(t *testing.T, srv *vaulttest.Server, grantID string) int {
	t.Helper()
	list, err := srv.Client.Logical().ListWithContext(t.Context(), "auth/token/accessors")
	if err != nil {
		t.Fatalf("list accessors: %v", err)
	}
	keys, _ := list.Data["keys"].([]any)
	n := 0
	for _, k := range keys {
		s, err := srv.Client.Auth().Token().LookupAccessorWithContext(t.Context(), k.(string))
		if err != nil {
			continue // expired or revoked meanwhile
		}
		if meta, ok := s.Data["meta"].(map[string]any); ok && meta["grant_id"] == grantID {
			n++
		}
	}
	return n
}

func TestTokenIssuer_Vault(t *testing.T) {
	t.Parallel()
	e := setup(t)

	t.Run("issued token is bounded by the grant and labelled", func(t *testing.T) {
		t.Parallel()
		g := tokenGrant(grantID(), roleApp, 10*time.Minute)
		cred, err := e.iss.Issue(t.Context(), g)
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		if cred.Ref.Kind != approval.KindVaultToken || cred.Ref.ID == "" || cred.Secret == "" {
			t.Fatalf("Issue() = ref %+v, secret set %v; want a vault token with an accessor", cred.Ref, cred.Secret != "")
		}
		if cred.Ref.Expires.After(g.Expires) {
			t.Errorf("Ref.Expires = %v, after the grant's expiry %v", cred.Ref.Expires, g.Expires)
		}
		ttl, meta, err := e.iss.LookupAccessor(t.Context(), cred.Ref.ID)
		if err != nil {
			t.Fatalf("LookupAccessor() err = %v", err)
		}
		if ttl > g.TTL || ttl < g.TTL-30*time.Second {
			t.Errorf("token ttl = %s, want at most and close to the grant's %s", ttl, g.TTL)
		}
		wantMeta := map[string]string{"grant_id": g.ID, "spiffe_id": string(g.Principal), "entitlement": g.Entitlement, "break_glass": "false"}
		if diff := cmp.Diff(wantMeta, meta); diff != "" {
			t.Errorf("token metadata mismatch (-want +got):\n%s", diff)
		}

		// The token itself: not renewable, hard-capped, from the role's policy.
		self, err := e.srv.ClientWithToken(t, string(cred.Secret)).Auth().Token().LookupSelfWithContext(t.Context())
		if err != nil {
			t.Fatalf("lookup-self with the issued token: %v", err)
		}
		if r, _ := self.Data["renewable"].(bool); r {
			t.Errorf("issued token is renewable")
		}
		maxTTL, _ := self.Data["explicit_max_ttl"].(json.Number).Int64()
		if time.Duration(maxTTL)*time.Second > g.TTL || maxTTL == 0 {
			t.Errorf("explicit_max_ttl = %ds, want ≤ %s and set", maxTTL, g.TTL)
		}
		if got := self.Data["display_name"]; got != "token-writ-payments-db" {
			t.Errorf("display_name = %v, want token-writ-payments-db", got)
		}
		policies, _ := self.Data["policies"].([]any)
		if !containsAny(policies, "writ-test-app") {
			t.Errorf("policies = %v, want writ-test-app", policies)
		}
	})

	t.Run("ttl is the remaining lifetime rounded down to seconds", func(t *testing.T) {
		t.Parallel()
		g := tokenGrant(grantID(), roleApp, 90*time.Second+900*time.Millisecond)
		g.IssuedAt = g.IssuedAt.Add(-30 * time.Second) // decided half a minute ago
		g.Expires = g.IssuedAt.Add(g.TTL)
		cred, err := e.iss.Issue(t.Context(), g)
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		ttl, _, err := e.iss.LookupAccessor(t.Context(), cred.Ref.ID)
		if err != nil {
			t.Fatalf("LookupAccessor() err = %v", err)
		}
		if remaining := time.Until(g.Expires); ttl > remaining {
			t.Errorf("token ttl = %s, want ≤ the grant's remaining %s", ttl, remaining)
		}
		if ttl < 50*time.Second {
			t.Errorf("token ttl = %s, want about 60s", ttl)
		}
	})

	t.Run("ttl above the role limit fails and names the limit", func(t *testing.T) {
		t.Parallel()
		g := tokenGrant(grantID(), roleShort, 2*time.Minute)
		_, err := e.iss.Issue(t.Context(), g)
		if !errors.Is(err, approval.ErrTTLTooLong) {
			t.Fatalf("Issue() err = %v, want %v", err, approval.ErrTTLTooLong)
		}
		for _, want := range []string{`"short"`, "1m0s", "token_explicit_max_ttl"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Issue() err = %q, want it to mention %s", err, want)
			}
		}
		if n := tokensOfGrant(t, e.srv, g.ID); n != 0 {
			t.Errorf("%d tokens exist for the refused grant, want 0", n)
		}
	})

	t.Run("ttl within the role limit succeeds", func(t *testing.T) {
		t.Parallel()
		g := tokenGrant(grantID(), roleShort, time.Minute)
		cred, err := e.iss.Issue(t.Context(), g)
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		if ttl, _, err := e.iss.LookupAccessor(t.Context(), cred.Ref.ID); err != nil || ttl > time.Minute {
			t.Errorf("LookupAccessor() = %s, %v; want ≤ 1m", ttl, err)
		}
	})

	t.Run("periodic role is capped by the grant", func(t *testing.T) {
		t.Parallel()
		if _, err := e.srv.Client.Logical().WriteWithContext(t.Context(), "auth/token/roles/periodic", map[string]any{
			"allowed_policies": []string{"default"}, "orphan": true, "token_period": 3600,
		}); err != nil {
			t.Fatalf("create periodic role: %v", err)
		}
		g := tokenGrant(grantID(), "periodic", time.Minute)
		cred, err := e.iss.Issue(t.Context(), g)
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		if ttl, _, err := e.iss.LookupAccessor(t.Context(), cred.Ref.ID); err != nil || ttl > g.TTL {
			t.Errorf("LookupAccessor() = %s, %v; want a ttl ≤ %s despite the role's 1h period", ttl, err, g.TTL)
		}
	})

	t.Run("revoke ends the token and is idempotent", func(t *testing.T) {
		t.Parallel()
		cred, err := e.iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, 5*time.Minute))
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		for i := range 2 {
			if err := e.iss.Revoke(t.Context(), cred.Ref); err != nil {
				t.Fatalf("Revoke() #%d err = %v, want nil", i+1, err)
			}
		}
		if _, _, err := e.iss.LookupAccessor(t.Context(), cred.Ref.ID); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("LookupAccessor(revoked) err = %v, want %v", err, vault.ErrNotFound)
		}
		_, err = e.srv.ClientWithToken(t, string(cred.Secret)).Auth().Token().LookupSelfWithContext(t.Context())
		var re *api.ResponseError
		if !errors.As(err, &re) || re.StatusCode != 403 {
			t.Errorf("lookup-self with a revoked token err = %v, want 403", err)
		}
	})

	t.Run("revoking an accessor Vault never issued succeeds", func(t *testing.T) {
		t.Parallel()
		ref := approval.CredentialRef{Kind: approval.KindVaultToken, ID: "notarealaccessor0000000000"}
		if err := e.iss.Revoke(t.Context(), ref); err != nil {
			t.Fatalf("Revoke(unknown) err = %v, want nil", err)
		}
	})

	t.Run("unknown role", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			token string
			want  error
		}{
			// Writ's token may only read the roles it was given.
			{"with the issuer token", e.token, vault.ErrDenied},
			{"with a root token", e.srv.RootToken, vault.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				iss := newIssuer(t, e.srv.Addr, tt.token, nil)
				_, err := iss.Issue(t.Context(), tokenGrant(grantID(), "nosuchrole", time.Minute))
				if !errors.Is(err, tt.want) {
					t.Fatalf("Issue() err = %v, want %v", err, tt.want)
				}
				if !strings.Contains(err.Error(), "auth/token/roles/nosuchrole") {
					t.Errorf("Issue() err = %q, want it to name auth/token/roles/nosuchrole", err)
				}
			})
		}
	})

	t.Run("token without permission is denied with the path", func(t *testing.T) {
		t.Parallel()
		// May read the role but not create from it.
		e.srv.Policy(t, "read-role-only", `path "auth/token/roles/app" { capabilities = ["read"] }`)
		tests := []struct {
			name     string
			policies []string
			path     string
		}{
			{"default policy only", []string{"default"}, "auth/token/roles/app"},
			{"no create capability", []string{"read-role-only"}, "auth/token/create/app"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				iss := newIssuer(t, e.srv.Addr, e.srv.Token(t, tt.policies...), nil)
				_, err := iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute))
				if !errors.Is(err, vault.ErrDenied) {
					t.Fatalf("Issue() err = %v, want %v", err, vault.ErrDenied)
				}
				if !strings.Contains(err.Error(), tt.path) {
					t.Errorf("Issue() err = %q, want it to name %s", err, tt.path)
				}
				var re *api.ResponseError
				if !errors.As(err, &re) || re.StatusCode != 403 {
					t.Errorf("Issue() err does not carry the 403 *api.ResponseError: %v", err)
				}
			})
		}
	})

	t.Run("the token never reaches the log", func(t *testing.T) {
		t.Parallel()
		var logs bytes.Buffer
		iss := newIssuer(t, e.srv.Addr, e.token, &logs)
		g := tokenGrant(grantID(), roleApp, time.Minute)
		cred, err := iss.Issue(t.Context(), g)
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		if err := iss.Revoke(t.Context(), cred.Ref); err != nil {
			t.Fatalf("Revoke() err = %v", err)
		}
		if err := iss.Revoke(t.Context(), cred.Ref); err != nil {
			t.Fatalf("Revoke() again err = %v", err)
		}
		_, err = iss.Issue(t.Context(), tokenGrant(grantID(), roleShort, time.Hour))
		if err == nil {
			t.Fatalf("Issue(too long) err = nil")
		}
		out := logs.String()
		if !strings.Contains(out, cred.Ref.ID) || !strings.Contains(out, g.ID) {
			t.Fatalf("log does not record the accessor and grant; the test would prove nothing:\n%s", out)
		}
		for _, secret := range []string{string(cred.Secret), e.token} {
			if strings.Contains(out, secret) {
				t.Errorf("a Vault token appears in the log:\n%s", out)
			}
		}
	})
}

// TestTokenIssuer_Vault_AmbientEnvIgnored sets every VAULT_* variable the API
// client would honour to something harmful and checks the issuer still uses
// only its Config. It cannot run in parallel (t.Setenv).
func TestTokenIssuer_Vault_AmbientEnvIgnored(t *testing.T) {
	e := setup(t)
	t.Setenv("VAULT_ADDR", closedAddr(t))
	t.Setenv("VAULT_TOKEN", e.srv.RootToken) // would make unknown roles ErrNotFound, not ErrDenied
	t.Setenv("VAULT_NAMESPACE", "elsewhere")
	t.Setenv("VAULT_WRAP_TTL", "5m") // would wrap the token in a cubbyhole response
	t.Setenv("VAULT_HEADERS", `{"X-Injected":"yes"}`)
	t.Setenv("VAULT_MAX_RETRIES", "9")
	t.Setenv("HTTP_PROXY", closedAddr(t))

	iss := newIssuer(t, e.srv.Addr, e.token, nil)
	cred, err := iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute))
	if err != nil {
		t.Fatalf("Issue() with hostile VAULT_* env err = %v", err)
	}
	if _, meta, err := iss.LookupAccessor(t.Context(), cred.Ref.ID); err != nil || meta["entitlement"] != "payments-db" {
		t.Fatalf("LookupAccessor() = %v, %v; want the unwrapped token's metadata", meta, err)
	}
	if _, err := iss.Issue(t.Context(), tokenGrant(grantID(), "nosuchrole", time.Minute)); !errors.Is(err, vault.ErrDenied) {
		t.Errorf("Issue(unknown role) err = %v, want %v (the configured token, not VAULT_TOKEN)", err, vault.ErrDenied)
	}
}

// TestTokenIssuer_Vault_Sealed seals a real server: Vault answers 503.
func TestTokenIssuer_Vault_Sealed(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cred, err := e.iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute))
	if err != nil {
		t.Fatalf("Issue() err = %v", err)
	}
	if err := e.srv.Client.Sys().SealWithContext(t.Context()); err != nil {
		t.Fatalf("seal: %v", err)
	}
	if _, err := e.iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute)); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Issue(sealed) err = %v, want %v", err, vault.ErrUnavailable)
	}
	if err := e.iss.Revoke(t.Context(), cred.Ref); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Revoke(sealed) err = %v, want %v (a revocation Vault did not perform must not look like success)", err, vault.ErrUnavailable)
	}
}

// containsAny reports whether list holds s.
func containsAny(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
