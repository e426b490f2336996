package vault_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/vault"
)

func TestNewClient_Errors(t *testing.T) {
	t.Parallel()
	cert := func() (*tls.Certificate, error) { return nil, errors.New("none") }
	tests := []struct {
		name string
		cfg  vault.ClientConfig
	}{
		{"no address", vault.ClientConfig{Auth: vault.AuthConfig{Token: "t"}}},
		{"no auth", vault.ClientConfig{Address: "https://vault.internal:8200"}},
		{"unknown method", vault.ClientConfig{Address: "https://vault.internal:8200", Auth: vault.AuthConfig{Method: "ldap"}}},
		{"approle without role id", vault.ClientConfig{Address: "https://vault.internal:8200", Auth: vault.AuthConfig{Method: vault.AuthAppRole, SecretID: "s"}}},
		{"cert without certificate", vault.ClientConfig{Address: "https://vault.internal:8200", Auth: vault.AuthConfig{Method: vault.AuthCert}}},
		{"cert over http", vault.ClientConfig{Address: "http://vault.internal:8200", Auth: vault.AuthConfig{Method: vault.AuthCert, ClientCertificate: cert}}},
		{"mount path climbing out", vault.ClientConfig{Address: "https://vault.internal:8200", Auth: vault.AuthConfig{Method: vault.AuthAppRole, RoleID: "r", MountPath: "../sys"}}},
		{"missing CA file", vault.ClientConfig{Address: "https://vault.internal:8200", Auth: vault.AuthConfig{Token: "t"}, CACertFile: filepath.Join(t.TempDir(), "ca.pem")}},
		{"negative timeout", vault.ClientConfig{Address: "https://vault.internal:8200", Auth: vault.AuthConfig{Token: "t"}, Timeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if c, err := vault.NewClient(t.Context(), tt.cfg); err == nil {
				c.Close()
				t.Fatalf("NewClient() = %v, nil; want an error", c)
			}
		})
	}
}

// TestSecretIssuer_InvalidGrant checks that malformed grants, including
// paths that would change the Vault request (reliability case T37), are
// refused before Vault is contacted: the address is a closed port, so any
// request would fail with ErrUnavailable instead.
func TestSecretIssuer_InvalidGrant(t *testing.T) {
	t.Parallel()
	c := newClient(t, vault.ClientConfig{Address: closedAddr(t), Auth: vault.AuthConfig{Token: "t"}}, nil)
	iss, err := vault.NewSecretIssuer(vault.SecretIssuerConfig{Client: c})
	if err != nil {
		t.Fatalf("NewSecretIssuer() err = %v", err)
	}
	tests := []struct {
		name   string
		change func(g *approval.Grant)
	}{
		{"token recipe", func(g *approval.Grant) { g.Recipe = approval.Recipe{Kind: approval.KindVaultToken, Role: "app"} }},
		{"no path", func(g *approval.Grant) { g.Recipe.Path = "" }},
		{"path climbing to sys", func(g *approval.Grant) { g.Recipe.Path = "database/creds/../../sys/seal" }},
		{"absolute path", func(g *approval.Grant) { g.Recipe.Path = "/database/creds/orders-ro" }},
		{"encoded slash", func(g *approval.Grant) { g.Recipe.Path = "database/creds/a%2F..%2Fb" }},
		{"query", func(g *approval.Grant) { g.Recipe.Path = "database/creds/orders-ro?ttl=1" }},
		{"NUL", func(g *approval.Grant) { g.Recipe.Path = "database/creds/orders-ro\x00" }},
		{"overlong path", func(g *approval.Grant) { g.Recipe.Path = "database/creds/" + strings.Repeat("a", 300) }},
		{"no grant ID", func(g *approval.Grant) { g.ID = "" }},
		{"grant already expired", func(g *approval.Grant) { g.IssuedAt = g.IssuedAt.Add(-time.Hour); g.Expires = g.IssuedAt.Add(g.TTL) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := secretGrant("database/creds/orders-ro", time.Minute)
			tt.change(&g)
			_, err := iss.Issue(t.Context(), g)
			if !errors.Is(err, approval.ErrInvalid) {
				t.Fatalf("Issue() err = %v, want %v", err, approval.ErrInvalid)
			}
			if errors.Is(err, vault.ErrUnavailable) {
				t.Errorf("Issue() contacted Vault for an invalid grant: %v", err)
			}
		})
	}
	for _, ref := range []approval.CredentialRef{
		{Kind: approval.KindVaultToken, ID: "database/creds/orders-ro/x"},
		{Kind: approval.KindVaultSecret, ID: "../../sys/seal"},
		{Kind: approval.KindVaultSecret},
	} {
		if err := iss.Revoke(t.Context(), ref); !errors.Is(err, approval.ErrInvalid) {
			t.Errorf("Revoke(%+v) err = %v, want %v", ref, err, approval.ErrInvalid)
		}
		if _, err := iss.Renew(t.Context(), ref, time.Minute); !errors.Is(err, approval.ErrInvalid) {
			t.Errorf("Renew(%+v) err = %v, want %v", ref, err, approval.ErrInvalid)
		}
	}
}

// TestSecretIssuer_Issue_UnrevokableOverGrant uses a fake Vault for what a
// real one will not do on demand: over-grant and then fail the revocation.
func TestSecretIssuer_Issue_UnrevokableOverGrant(t *testing.T) {
	t.Parallel()
	const password = "fake-db-password"
	f := newFakeVault(t, map[string]http.HandlerFunc{
		"/v1/database/creds/orders-ro": reply(200, `{"lease_id":"database/creds/orders-ro/abc","lease_duration":3600,"renewable":true,"data":{"username":"u","password":"`+password+`"}}`),
		"/v1/sys/leases/revoke/":       reply(500, `{"errors":["internal error"]}`),
	})
	var logs syncBuffer
	c := newClient(t, vault.ClientConfig{Address: f.srv.URL, Auth: vault.AuthConfig{Token: "t"}, Retries: -1}, &logs)
	iss, err := vault.NewSecretIssuer(vault.SecretIssuerConfig{Client: c})
	if err != nil {
		t.Fatalf("NewSecretIssuer() err = %v", err)
	}
	cred, err := iss.Issue(t.Context(), secretGrant("database/creds/orders-ro", time.Minute))
	if !errors.Is(err, vault.ErrOverGrant) || !errors.Is(err, vault.ErrUnavailable) || !strings.Contains(err.Error(), "database/creds/orders-ro/abc") {
		t.Fatalf("Issue() err = %v, want %v and %v naming the lease", err, vault.ErrOverGrant, vault.ErrUnavailable)
	}
	if len(cred.Data) != 0 {
		t.Errorf("Issue() returned the over-granted credential")
	}
	if strings.Contains(logs.String(), password) || strings.Contains(err.Error(), password) {
		t.Errorf("the password leaked into logs or the error")
	}
}

func TestRecipePolicy(t *testing.T) {
	t.Parallel()
	got, err := vault.RecipePolicy(
		approval.Recipe{Kind: approval.KindVaultSecret, Path: "database/creds/orders-ro"},
		approval.Recipe{Kind: approval.KindVaultTransitJWT, TransitKey: "writ"},
		approval.Recipe{Kind: approval.KindVaultToken, Role: "app"},
		approval.Recipe{Kind: approval.KindVaultSecret, Path: "database/creds/orders-ro"},
		approval.Recipe{Kind: approval.KindJWT, Audience: []string{"a"}},
	)
	if err != nil {
		t.Fatalf("RecipePolicy() err = %v", err)
	}
	for _, want := range []string{
		`path "auth/token/create/app"`,
		`path "database/creds/orders-ro" {` + "\n" + `  capabilities = ["read"]`,
		`path "database/roles/orders-ro"`,
		`path "sys/leases/revoke/database/creds/orders-ro/*"`,
		`path "sys/leases/renew/database/creds/orders-ro/*"`,
		`path "transit/sign/writ"`,
		`path "transit/sign/writ/sha2-256"`,
		`path "transit/keys/writ" {` + "\n" + `  capabilities = ["read"]`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("RecipePolicy() lacks %s:\n%s", want, got)
		}
	}
	if n := strings.Count(got, `path "database/creds/orders-ro"`); n != 1 {
		t.Errorf("RecipePolicy() names the duplicate path %d times, want 1", n)
	}
	for _, bad := range []string{`"sys/leases/revoke"`, `"sys/leases/revoke/*"`, "export", "rotate", "sudo"} {
		if strings.Contains(got, bad) {
			t.Errorf("RecipePolicy() grants %s, more than needed:\n%s", bad, got)
		}
	}

	for _, r := range []approval.Recipe{
		{Kind: approval.KindVaultSecret, Path: "database/creds/../../sys"},
		{Kind: approval.KindVaultTransitJWT, TransitKey: "a/b"},
		{Kind: approval.KindVaultToken, Role: "../x"},
	} {
		if _, err := vault.RecipePolicy(r); !errors.Is(err, approval.ErrInvalid) {
			t.Errorf("RecipePolicy(%+v) err = %v, want %v", r, err, approval.ErrInvalid)
		}
	}
}
