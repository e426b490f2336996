package vaulttest

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Mount enables a secrets engine of type typ at path (sys/mounts/<path>).
func (s *Server) Mount(t testing.TB, path, typ string) {
	t.Helper()
	if err := s.Client.Sys().MountWithContext(t.Context(), path, &api.MountInput{Type: typ}); err != nil {
		t.Fatalf("vaulttest: mount %s at %s: %v", typ, path, err)
	}
}

// EnableAuth enables an auth method of type typ at auth/<path>.
func (s *Server) EnableAuth(t testing.TB, path, typ string) {
	t.Helper()
	if err := s.Client.Sys().EnableAuthWithOptionsWithContext(t.Context(), path, &api.EnableAuthOptions{Type: typ}); err != nil {
		t.Fatalf("vaulttest: enable auth %s at %s: %v", typ, path, err)
	}
}

// Write writes data to path with the root token and returns Vault's
// answer, failing the test on error.
func (s *Server) Write(t testing.TB, path string, data map[string]any) *api.Secret {
	t.Helper()
	sec, err := s.Client.Logical().WriteWithContext(t.Context(), path, data)
	if err != nil {
		t.Fatalf("vaulttest: write %s: %v", path, err)
	}
	return sec
}

// AppRole enables AppRole auth at auth/approle (once per server) and
// creates role name whose tokens get policies (plus "default") with the
// given token TTL and max TTL. It returns the role ID and a new secret ID.
func (s *Server) AppRole(t testing.TB, name string, tokenTTL, tokenMaxTTL time.Duration, policies ...string) (roleID, secretID string) {
	t.Helper()
	s.enableOnce(t, "approle")
	s.Write(t, "auth/approle/role/"+name, map[string]any{
		"token_policies": policies,
		"token_ttl":      int64(tokenTTL / time.Second),
		"token_max_ttl":  int64(tokenMaxTTL / time.Second),
	})
	id, err := s.Client.Logical().ReadWithContext(t.Context(), "auth/approle/role/"+name+"/role-id")
	if err != nil || id == nil {
		t.Fatalf("vaulttest: read role id of %s: %v", name, err)
	}
	sec := s.Write(t, "auth/approle/role/"+name+"/secret-id", nil)
	return id.Data["role_id"].(string), sec.Data["secret_id"].(string)
}

// CertRole enables TLS certificate auth at auth/cert (once per server) and
// registers role name: clients presenting a certificate issued by ca whose
// URI SAN matches one of allowedURISANs (globs allowed) get policies (plus
// "default") for tokenTTL. The server must come from StartTLS.
func (s *Server) CertRole(t testing.TB, name string, ca *x509.Certificate, allowedURISANs []string, tokenTTL time.Duration, policies ...string) {
	t.Helper()
	s.enableOnce(t, "cert")
	s.Write(t, "auth/cert/certs/"+name, map[string]any{
		"certificate":      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})),
		"allowed_uri_sans": allowedURISANs,
		"token_policies":   policies,
		"token_ttl":        int64(tokenTTL / time.Second),
	})
}

// enableOnce enables auth method typ at its default path unless it is
// enabled already.
func (s *Server) enableOnce(t testing.TB, typ string) {
	t.Helper()
	s.authMu.Lock()
	defer s.authMu.Unlock()
	auths, err := s.Client.Sys().ListAuthWithContext(t.Context())
	if err != nil {
		t.Fatalf("vaulttest: list auth methods: %v", err)
	}
	if _, ok := auths[typ+"/"]; !ok {
		s.EnableAuth(t, typ, typ)
	}
}

// DBRole is a database secrets engine role for PostgresEngine.
type DBRole struct {
	// Name of the role; credentials are read from database/creds/<Name>.
	Name string
	// DefaultTTL and MaxTTL are Vault durations such as "5m".
	DefaultTTL, MaxTTL string
}

// PostgresEngine mounts Vault's database secrets engine at "database",
// connects it to the PostgreSQL server at addr as superuser user/password,
// and creates roles whose users may log in and SELECT on every table of the
// public schema until their lease ends.
func (s *Server) PostgresEngine(t testing.TB, addr, user, password string, roles ...DBRole) {
	t.Helper()
	names := make([]string, 0, len(roles))
	for _, r := range roles {
		names = append(names, r.Name)
	}
	s.Mount(t, "database", "database")
	s.Write(t, "database/config/pg", map[string]any{
		"plugin_name":       "postgresql-database-plugin",
		"connection_url":    "postgresql://{{username}}:{{password}}@" + addr + "/postgres?sslmode=disable",
		"username":          user,
		"password":          password,
		"allowed_roles":     strings.Join(names, ","),
		"verify_connection": true,
	})
	creation := `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`
	for _, r := range roles {
		s.Write(t, "database/roles/"+r.Name, map[string]any{
			"db_name":             "pg",
			"creation_statements": creation,
			"default_ttl":         r.DefaultTTL,
			"max_ttl":             r.MaxTTL,
		})
	}
}

// DatabaseRoles mounts the database secrets engine at "database",
// connects it to the PostgreSQL server at addr (host:port) as user, and
// creates each role of roles (name → default_ttl, max_ttl) whose users may
// log in until their lease ends. Leases are then read at
// database/creds/<name>.
func (s *Server) DatabaseRoles(t testing.TB, addr, user, password string, roles map[string][2]time.Duration) {
	t.Helper()
	s.Mount(t, "database", "database")
	names := make([]string, 0, len(roles))
	for name := range roles {
		names = append(names, name)
	}
	s.Write(t, "database/config/pg", map[string]any{
		"plugin_name":       "postgresql-database-plugin",
		"connection_url":    "postgresql://{{username}}:{{password}}@" + addr + "/postgres?sslmode=disable",
		"username":          user,
		"password":          password,
		"allowed_roles":     strings.Join(names, ","),
		"verify_connection": true,
	})
	for name, ttls := range roles {
		s.Write(t, "database/roles/"+name, map[string]any{
			"db_name":             "pg",
			"creation_statements": `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
			"default_ttl":         int64(ttls[0] / time.Second),
			"max_ttl":             int64(ttls[1] / time.Second),
		})
	}
}
