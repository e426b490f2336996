package vault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/pgtest"
	"github.com/writ-dev/writ/internal/testenv"
	"github.com/writ-dev/writ/internal/vault"
	"github.com/writ-dev/writ/internal/vault/vaulttest"
)

// Database roles of the secrets test environment.
const (
	pathOrdersRO    = "database/creds/orders-ro"    // default_ttl 5m, max_ttl 10m
	pathOrdersShort = "database/creds/orders-short" // default_ttl 3s
	pathOrdersLong  = "database/creds/orders-long"  // default_ttl 1h: longer than the test grants
)

// dbEnv is a Vault dev server whose database secrets engine mints users
// on a real PostgreSQL server.
type dbEnv struct {
	srv *vaulttest.Server
	pg  *pgtest.Server
	// token holds exactly vault.RecipePolicy for the three paths.
	token string
}

// setupDB starts PostgreSQL and Vault, and configures Vault's database
// engine with the orders-* roles.
func setupDB(t *testing.T) *dbEnv {
	t.Helper()
	pg := pgtest.Start(t)
	pg.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, total numeric)`, `INSERT INTO orders VALUES (1, 9.99)`)
	srv := vaulttest.Start(t)
	srv.Mount(t, "database", "database")
	srv.Write(t, "database/config/pg", map[string]any{
		"plugin_name":       "postgresql-database-plugin",
		"connection_url":    "postgresql://{{username}}:{{password}}@" + pg.Addr + "/postgres?sslmode=disable",
		"username":          pg.SuperUser,
		"password":          pg.Password,
		"allowed_roles":     "orders-ro,orders-short,orders-long",
		"verify_connection": true,
	})
	creation := `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON orders TO "{{name}}";`
	for role, ttls := range map[string][2]string{
		"orders-ro":    {"5m", "10m"},
		"orders-short": {"3s", "3s"},
		"orders-long":  {"1h", "2h"},
	} {
		srv.Write(t, "database/roles/"+role, map[string]any{
			"db_name":             "pg",
			"creation_statements": creation,
			"default_ttl":         ttls[0],
			"max_ttl":             ttls[1],
		})
	}
	var recipes []approval.Recipe
	for _, p := range []string{pathOrdersRO, pathOrdersShort, pathOrdersLong} {
		recipes = append(recipes, approval.Recipe{Kind: approval.KindVaultSecret, Path: p})
	}
	hcl, err := vault.RecipePolicy(recipes...)
	if err != nil {
		t.Fatalf("RecipePolicy() err = %v", err)
	}
	srv.Policy(t, "writ-secrets", hcl)
	return &dbEnv{srv: srv, pg: pg, token: srv.Token(t, "writ-secrets")}
}

// secretIssuer returns a SecretIssuer using e's policy token, logging to
// log (may be nil).
func (e *dbEnv) secretIssuer(t *testing.T, shorten bool, log io.Writer) *vault.SecretIssuer {
	t.Helper()
	c := newClient(t, vault.ClientConfig{Address: e.srv.Addr, Auth: vault.AuthConfig{Token: e.token}}, log)
	iss, err := vault.NewSecretIssuer(vault.SecretIssuerConfig{Client: c, ShortenLeases: shorten})
	if err != nil {
		t.Fatalf("NewSecretIssuer() err = %v", err)
	}
	return iss
}

// newClient returns a Client for cfg, logging to log (may be nil), closed
// when the test ends.
func newClient(t *testing.T, cfg vault.ClientConfig, log io.Writer) *vault.Client {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if log != nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := vault.NewClient(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewClient() err = %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// secretGrant returns a grant for the dynamic secret at path, decided now.
func secretGrant(path string, ttl time.Duration) approval.Grant {
	now := time.Now()
	return approval.Grant{
		ID:          grantID(),
		Principal:   "spiffe://example.test/ns/prod/sa/orders",
		Entitlement: "orders-db-ro",
		Recipe:      approval.Recipe{Kind: approval.KindVaultSecret, Path: path},
		TTL:         ttl,
		IssuedAt:    now,
		Expires:     now.Add(ttl),
	}
}

// login logs in to PostgreSQL with the credential's username and password
// and reads the orders table.
func (e *dbEnv) login(ctx context.Context, cred approval.Credential) error {
	return e.pg.Login(ctx, "postgres", string(cred.Data["username"]), string(cred.Data["password"]))
}

// leaseTTL returns the remaining TTL of lease as Vault reports it.
func (e *dbEnv) leaseTTL(t *testing.T, lease string) time.Duration {
	t.Helper()
	s, err := e.srv.Client.Logical().WriteWithContext(t.Context(), "sys/leases/lookup", map[string]any{"lease_id": lease})
	if err != nil {
		t.Fatalf("look up lease %s: %v", lease, err)
	}
	n, _ := s.Data["ttl"].(json.Number).Int64()
	return time.Duration(n) * time.Second
}

// leases lists the live leases under prefix (e.g. "database/creds/orders-long").
func (e *dbEnv) leases(t *testing.T, prefix string) []any {
	t.Helper()
	s, err := e.srv.Client.Logical().ListWithContext(t.Context(), "sys/leases/lookup/"+prefix)
	if err != nil {
		t.Fatalf("list leases under %s: %v", prefix, err)
	}
	if s == nil {
		return nil
	}
	keys, _ := s.Data["keys"].([]any)
	return keys
}

func TestSecretIssuer_PostgreSQL(t *testing.T) {
	t.Parallel()
	e := setupDB(t)
	iss := e.secretIssuer(t, false, nil)

	t.Run("issued credentials log in until revoked", func(t *testing.T) {
		t.Parallel()
		g := secretGrant(pathOrdersRO, 8*time.Minute)
		cred, err := iss.Issue(t.Context(), g)
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		if cred.Ref.Kind != approval.KindVaultSecret || !strings.HasPrefix(cred.Ref.ID, pathOrdersRO+"/") || cred.Secret != "" {
			t.Fatalf("Issue() ref = %+v, secret set %v; want a lease under %s and no Secret", cred.Ref, cred.Secret != "", pathOrdersRO)
		}
		if cred.Data["username"] == "" || cred.Data["password"] == "" {
			t.Fatalf("Issue() data has keys %v, want username and password", keys(cred.Data))
		}
		if cred.Ref.Expires.After(g.Expires) {
			t.Errorf("Ref.Expires = %v, after the grant's expiry %v", cred.Ref.Expires, g.Expires)
		}
		if err := e.login(t.Context(), cred); err != nil {
			t.Fatalf("log in with the issued credentials: %v", err)
		}
		for i := range 2 {
			if err := iss.Revoke(t.Context(), cred.Ref); err != nil {
				t.Fatalf("Revoke() #%d err = %v, want nil", i+1, err)
			}
		}
		if err := e.login(t.Context(), cred); err == nil {
			t.Errorf("log in after Revoke succeeded, want it refused")
		}
		if got := e.leases(t, cred.Ref.ID); len(got) != 0 {
			t.Errorf("lease still listed after Revoke: %v", got)
		}
	})

	t.Run("revoking a lease vault never issued succeeds", func(t *testing.T) {
		t.Parallel()
		ref := approval.CredentialRef{Kind: approval.KindVaultSecret, ID: pathOrdersRO + "/notarealleaseid0000000000"}
		if err := iss.Revoke(t.Context(), ref); err != nil {
			t.Fatalf("Revoke(unknown) err = %v, want nil", err)
		}
	})

	t.Run("a short lease stops working when it expires", func(t *testing.T) {
		t.Parallel()
		cred, err := iss.Issue(t.Context(), secretGrant(pathOrdersShort, time.Minute))
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		if ttl := cred.Ref.Expires.Sub(cred.IssuedAt); ttl > 3*time.Second {
			t.Errorf("credential ttl = %s, want the role's 3s", ttl)
		}
		if err := e.login(t.Context(), cred); err != nil {
			t.Fatalf("log in before expiry: %v", err)
		}
		// PostgreSQL's VALID UNTIL, then Vault's revocation, end it.
		testenv.Eventually(t, 30*time.Second, "the credentials to be refused after a 3s lease", func() bool { return e.login(t.Context(), cred) != nil })
		if late := time.Since(cred.Ref.Expires); late > 20*time.Second {
			t.Errorf("credentials worked until %s after Ref.Expires", late)
		}
	})

	t.Run("a lease longer than the grant is revoked at once", func(t *testing.T) {
		t.Parallel()
		var logs bytes.Buffer
		iss := e.secretIssuer(t, false, &logs)
		g := secretGrant(pathOrdersLong, 10*time.Minute)
		cred, err := iss.Issue(t.Context(), g)
		if !errors.Is(err, vault.ErrOverGrant) || !errors.Is(err, approval.ErrTTLTooLong) {
			t.Fatalf("Issue() err = %v, want %v and %v", err, vault.ErrOverGrant, approval.ErrTTLTooLong)
		}
		if len(cred.Data) != 0 || cred.Ref.ID != "" {
			t.Errorf("Issue() returned the over-granted credential")
		}
		for _, want := range []string{pathOrdersLong, "1h0m0s", "9m5", "default_ttl"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Issue() err = %q, want it to mention %s", err, want)
			}
		}
		if got := e.leases(t, pathOrdersLong); len(got) != 0 {
			t.Errorf("over-granted leases still live: %v", got)
		}
		if !strings.Contains(logs.String(), "over-granted lease revoked") {
			t.Errorf("no log line for the revoked over-grant:\n%s", logs.String())
		}
	})

	t.Run("a lease longer than the grant is shortened when allowed", func(t *testing.T) {
		t.Parallel()
		iss := e.secretIssuer(t, true, nil)
		g := secretGrant(pathOrdersLong, 2*time.Minute)
		cred, err := iss.Issue(t.Context(), g)
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		if cred.Ref.Expires.After(g.Expires) {
			t.Errorf("Ref.Expires = %v, after the grant's expiry %v", cred.Ref.Expires, g.Expires)
		}
		if ttl := e.leaseTTL(t, cred.Ref.ID); ttl > 2*time.Minute || ttl < time.Minute {
			t.Errorf("vault lease ttl = %s, want at most and close to the grant's 2m", ttl)
		}
		if err := e.login(t.Context(), cred); err != nil {
			t.Errorf("log in with the shortened credentials: %v", err)
		}
		if err := iss.Revoke(t.Context(), cred.Ref); err != nil {
			t.Errorf("Revoke() err = %v", err)
		}
	})

	t.Run("renew extends the lease within the role's max_ttl", func(t *testing.T) {
		t.Parallel()
		cred, err := iss.Issue(t.Context(), secretGrant(pathOrdersRO, 9*time.Minute))
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		before := time.Now()
		exp, err := iss.Renew(t.Context(), cred.Ref, 7*time.Minute)
		if err != nil {
			t.Fatalf("Renew() err = %v", err)
		}
		if d := exp.Sub(before); d < 6*time.Minute || d > 7*time.Minute+time.Second {
			t.Errorf("Renew() expiry in %s, want about 7m", d)
		}
		if err := iss.Revoke(t.Context(), cred.Ref); err != nil {
			t.Fatalf("Revoke() err = %v", err)
		}
		if _, err := iss.Renew(t.Context(), cred.Ref, time.Minute); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Renew(revoked) err = %v, want %v", err, vault.ErrNotFound)
		}
	})

	t.Run("max ttl comes from the database role", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			path string
			want time.Duration
		}{
			{pathOrdersRO, 10 * time.Minute},
			{pathOrdersLong, 2 * time.Hour},
		}
		for _, tt := range tests {
			got, err := iss.MaxTTL(t.Context(), approval.Recipe{Kind: approval.KindVaultSecret, Path: tt.path})
			if err != nil || got != tt.want {
				t.Errorf("MaxTTL(%s) = %s, %v; want %s", tt.path, got, err, tt.want)
			}
		}
	})

	t.Run("paths outside the policy are denied with the path", func(t *testing.T) {
		t.Parallel()
		e.srv.Write(t, "database/roles/orders-rw", map[string]any{
			"db_name": "pg", "creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}';`,
		})
		_, err := iss.Issue(t.Context(), secretGrant("database/creds/orders-rw", time.Minute))
		if !errors.Is(err, vault.ErrDenied) || !strings.Contains(err.Error(), "database/creds/orders-rw") {
			t.Fatalf("Issue(orders-rw) err = %v, want %v naming the path", err, vault.ErrDenied)
		}
		ref := approval.CredentialRef{Kind: approval.KindVaultSecret, ID: "database/creds/orders-rw/abc"}
		if err := iss.Revoke(t.Context(), ref); !errors.Is(err, vault.ErrDenied) {
			t.Errorf("Revoke(lease of another role) err = %v, want %v", err, vault.ErrDenied)
		}
	})

	t.Run("a static secret is refused", func(t *testing.T) {
		t.Parallel()
		e.srv.Mount(t, "kv", "kv")
		e.srv.Write(t, "kv/static", map[string]any{"password": "static-pass"})
		iss := secretIssuerWithToken(t, e.srv, e.srv.RootToken)
		_, err := iss.Issue(t.Context(), secretGrant("kv/static", time.Minute))
		if !errors.Is(err, vault.ErrNoLease) {
			t.Fatalf("Issue(kv) err = %v, want %v", err, vault.ErrNoLease)
		}
	})

	t.Run("secrets never reach the log", func(t *testing.T) {
		t.Parallel()
		var logs bytes.Buffer
		iss := e.secretIssuer(t, false, &logs)
		cred, err := iss.Issue(t.Context(), secretGrant(pathOrdersRO, 8*time.Minute))
		if err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		if err := iss.Revoke(t.Context(), cred.Ref); err != nil {
			t.Fatalf("Revoke() err = %v", err)
		}
		out := logs.String()
		if !strings.Contains(out, cred.Ref.ID) {
			t.Fatalf("log does not record the lease; the test would prove nothing:\n%s", out)
		}
		if strings.Contains(out, string(cred.Data["password"])) || strings.Contains(out, e.token) {
			t.Errorf("a password or token reached the log:\n%s", out)
		}
	})
}

// secretIssuerWithToken returns a SecretIssuer for srv acting with token.
func secretIssuerWithToken(t *testing.T, srv *vaulttest.Server, token string) *vault.SecretIssuer {
	t.Helper()
	c := newClient(t, vault.ClientConfig{Address: srv.Addr, Auth: vault.AuthConfig{Token: token}}, nil)
	iss, err := vault.NewSecretIssuer(vault.SecretIssuerConfig{Client: c})
	if err != nil {
		t.Fatalf("NewSecretIssuer() err = %v", err)
	}
	return iss
}

// keys returns the keys of m, for messages.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
