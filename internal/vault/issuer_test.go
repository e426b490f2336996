package vault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/vault"
)

// closedAddr returns the URL of a loopback port nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// newIssuer returns a TokenIssuer for addr with token, logging to log (may be
// nil).
func newIssuer(t *testing.T, addr, token string, log io.Writer) *vault.TokenIssuer {
	t.Helper()
	cfg := vault.Config{Address: addr, Token: token, Timeout: 5 * time.Second}
	if log != nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	iss, err := vault.New(cfg)
	if err != nil {
		t.Fatalf("New() err = %v", err)
	}
	return iss
}

// tokenGrant returns a grant for a Vault token from role, decided now.
func tokenGrant(id, role string, ttl time.Duration) approval.Grant {
	now := time.Now()
	return approval.Grant{
		ID:          id,
		Principal:   "spiffe://example.test/ns/prod/sa/api",
		Entitlement: "payments-db",
		Recipe:      approval.Recipe{Kind: approval.KindVaultToken, Role: role},
		Rule:        "entitlements.payments-db.requesters[0]",
		TTL:         ttl,
		IssuedAt:    now,
		Expires:     now.Add(ttl),
	}
}

func TestNew_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  vault.Config
	}{
		{"no address", vault.Config{Token: "t"}},
		{"address without scheme", vault.Config{Address: "vault.internal:8200", Token: "t"}},
		{"address with another scheme", vault.Config{Address: "ftp://vault.internal", Token: "t"}},
		{"no token", vault.Config{Address: "https://vault.internal:8200"}},
		{"negative timeout", vault.Config{Address: "https://vault.internal:8200", Token: "t", Timeout: -time.Second}},
		{"missing CA file", vault.Config{Address: "https://vault.internal:8200", Token: "t", CACertFile: filepath.Join(t.TempDir(), "ca.pem")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if iss, err := vault.New(tt.cfg); err == nil {
				t.Fatalf("New() = %v, nil; want an error", iss)
			}
		})
	}
}

func TestNew_CACertFile(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	// Without the CA the server's certificate is untrusted.
	bare := newIssuer(t, srv.URL, "t", nil)
	if _, _, err := bare.LookupAccessor(t.Context(), "a"); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("LookupAccessor() without CA err = %v, want %v", err, vault.ErrUnavailable)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pemCert(srv.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	iss, err := vault.New(vault.Config{Address: srv.URL, Token: "t", CACertFile: ca})
	if err != nil {
		t.Fatalf("New(CACertFile) err = %v", err)
	}
	// The TLS handshake succeeds; the 404 proves Vault's answer arrived.
	if _, _, err := iss.LookupAccessor(t.Context(), "a"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("LookupAccessor() with CA err = %v, want %v", err, vault.ErrNotFound)
	}
}

// TestTokenIssuer_Issue_InvalidGrant checks that malformed grants, including
// role names that would change the Vault path (reliability case T37), are
// refused before Vault is contacted: the address is a closed port, so any
// request would fail with ErrUnavailable instead.
func TestTokenIssuer_Issue_InvalidGrant(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, closedAddr(t), "t", nil)
	tests := []struct {
		name   string
		change func(g *approval.Grant)
	}{
		{"jwt recipe", func(g *approval.Grant) { g.Recipe = approval.Recipe{Kind: approval.KindJWT, Audience: []string{"a"}} }},
		{"no role", func(g *approval.Grant) { g.Recipe.Role = "" }},
		{"role climbing to sys", func(g *approval.Grant) { g.Recipe.Role = "../../sys/seal" }},
		{"role with a slash", func(g *approval.Grant) { g.Recipe.Role = "app/../other" }},
		{"role that is a dot-dot", func(g *approval.Grant) { g.Recipe.Role = ".." }},
		{"role with percent-encoding", func(g *approval.Grant) { g.Recipe.Role = "app%2F..%2Fsys" }},
		{"role with a query", func(g *approval.Grant) { g.Recipe.Role = "app?ttl=9999h" }},
		{"role with a space", func(g *approval.Grant) { g.Recipe.Role = "app x" }},
		{"role with a newline", func(g *approval.Grant) { g.Recipe.Role = "app\n" }},
		{"role with a backslash", func(g *approval.Grant) { g.Recipe.Role = `app\..\sys` }},
		{"no grant ID", func(g *approval.Grant) { g.ID = "" }},
		{"ttl below one second", func(g *approval.Grant) { g.TTL = 999 * time.Millisecond; g.Expires = g.IssuedAt.Add(g.TTL) }},
		{"grant already expired", func(g *approval.Grant) { g.IssuedAt = g.IssuedAt.Add(-time.Hour); g.Expires = g.IssuedAt.Add(g.TTL) }},
		{"grant expires within the second", func(g *approval.Grant) { g.Expires = time.Now().Add(500 * time.Millisecond) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := tokenGrant("grant-invalid", "app", time.Minute)
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
}

func TestTokenIssuer_Revoke_InvalidRef(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, closedAddr(t), "t", nil)
	for _, ref := range []approval.CredentialRef{
		{Kind: approval.KindJWT, ID: "grant-1"},
		{Kind: approval.KindVaultToken},
	} {
		if err := iss.Revoke(t.Context(), ref); !errors.Is(err, approval.ErrInvalid) {
			t.Errorf("Revoke(%+v) err = %v, want %v", ref, err, approval.ErrInvalid)
		}
	}
}

func TestTokenIssuer_Unreachable(t *testing.T) {
	t.Parallel()
	// A listener that never accepts: connections queue in the kernel and
	// requests get no answer, so only the timeout ends them.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { hang.Close() })

	tests := []struct {
		name    string
		addr    string
		timeout time.Duration
	}{
		{"connection refused", closedAddr(t), 5 * time.Second},
		{"no answer within the timeout", "http://" + hang.Addr().String(), 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			iss, err := vault.New(vault.Config{Address: tt.addr, Token: "t", Timeout: tt.timeout})
			if err != nil {
				t.Fatalf("New() err = %v", err)
			}
			calls := map[string]func() error{
				"Issue": func() error {
					_, err := iss.Issue(t.Context(), tokenGrant("grant-unreachable", "app", time.Minute))
					return err
				},
				"Revoke": func() error {
					return iss.Revoke(t.Context(), approval.CredentialRef{Kind: approval.KindVaultToken, ID: "acc"})
				},
				"LookupAccessor": func() error {
					_, _, err := iss.LookupAccessor(t.Context(), "acc")
					return err
				},
			}
			for name, call := range calls {
				start := time.Now()
				err := call()
				if elapsed := time.Since(start); elapsed > 3*time.Second {
					t.Errorf("%s took %s, want a quick failure", name, elapsed)
				}
				if !errors.Is(err, vault.ErrUnavailable) {
					t.Errorf("%s err = %v, want %v", name, err, vault.ErrUnavailable)
				}
			}
		})
	}
}

// fakeVault serves the few endpoints a test needs and records revocations.
// It is a unit-test double for behaviour a real Vault will not produce on
// demand (over-grants, arbitrary statuses).
type fakeVault struct {
	srv *httptest.Server

	mu      sync.Mutex
	revoked []string
}

func newFakeVault(t *testing.T, routes map[string]http.HandlerFunc) *fakeVault {
	t.Helper()
	f := &fakeVault{}
	mux := http.NewServeMux()
	for pattern, h := range routes {
		mux.HandleFunc(pattern, h)
	}
	if _, ok := routes["/v1/auth/token/revoke-accessor"]; !ok {
		mux.HandleFunc("/v1/auth/token/revoke-accessor", func(w http.ResponseWriter, r *http.Request) {
			var body struct{ Accessor string }
			_ = json.NewDecoder(r.Body).Decode(&body)
			f.mu.Lock()
			f.revoked = append(f.revoked, body.Accessor)
			f.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		})
	}
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVault) revokedAccessors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.revoked...)
}

// reply returns a handler answering status with body.
func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func TestTokenIssuer_Issue_OverGrant(t *testing.T) {
	t.Parallel()
	const secret = "hvs.fake-secret-token"
	tests := []struct {
		name        string
		lease       string
		revokeFails bool
	}{
		{"longer lease than asked", "3600", false},
		{"lease without expiry", "0", false},
		{"longer lease and the revocation fails", "3600", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			routes := map[string]http.HandlerFunc{
				"/v1/auth/token/roles/app":  reply(200, `{"data":{"token_explicit_max_ttl":0,"token_max_ttl":0,"token_period":0}}`),
				"/v1/auth/token/create/app": reply(200, `{"auth":{"client_token":"`+secret+`","accessor":"acc-over","lease_duration":`+tt.lease+`}}`),
			}
			if tt.revokeFails {
				routes["/v1/auth/token/revoke-accessor"] = reply(500, `{"errors":["internal error"]}`)
			}
			f := newFakeVault(t, routes)
			var logs bytes.Buffer
			iss := newIssuer(t, f.srv.URL, "t", &logs)
			cred, err := iss.Issue(t.Context(), tokenGrant("grant-over", "app", time.Minute))
			if !errors.Is(err, vault.ErrOverGrant) {
				t.Fatalf("Issue() err = %v, want %v", err, vault.ErrOverGrant)
			}
			if cred.Secret != "" {
				t.Errorf("Issue() returned the over-granted secret")
			}
			if tt.revokeFails {
				if !strings.Contains(err.Error(), "acc-over") || !errors.Is(err, vault.ErrUnavailable) {
					t.Errorf("Issue() err = %v, want it to name accessor acc-over and wrap %v", err, vault.ErrUnavailable)
				}
			} else if got := f.revokedAccessors(); len(got) != 1 || got[0] != "acc-over" {
				t.Errorf("revoked accessors = %v, want [acc-over]", got)
			}
			if strings.Contains(logs.String(), secret) || strings.Contains(err.Error(), secret) {
				t.Errorf("the token leaked into logs or the error")
			}
		})
	}
}

func TestTokenIssuer_Issue_ShorterLeaseIsReported(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	f := newFakeVault(t, map[string]http.HandlerFunc{
		"/v1/auth/token/roles/app":  reply(200, `{"data":{"token_explicit_max_ttl":0}}`),
		"/v1/auth/token/create/app": reply(200, `{"auth":{"client_token":"hvs.short","accessor":"acc-short","lease_duration":30}}`),
	})
	var logs bytes.Buffer
	iss, err := vault.New(vault.Config{
		Address: f.srv.URL, Token: "t", Now: func() time.Time { return now },
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatalf("New() err = %v", err)
	}
	g := tokenGrant("grant-short", "app", time.Minute)
	g.IssuedAt, g.Expires = now, now.Add(time.Minute)
	cred, err := iss.Issue(t.Context(), g)
	if err != nil {
		t.Fatalf("Issue() err = %v", err)
	}
	want := approval.CredentialRef{Kind: approval.KindVaultToken, ID: "acc-short", Expires: now.Add(30 * time.Second)}
	if cred.Ref != want {
		t.Errorf("Issue() Ref = %+v, want %+v", cred.Ref, want)
	}
	if !strings.Contains(logs.String(), "shorter ttl") {
		t.Errorf("no warning logged for the shortened lease:\n%s", logs.String())
	}
}

func TestTokenIssuer_ErrorMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"forbidden", 403, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`, vault.ErrDenied},
		{"not found", 404, `{"errors":[]}`, vault.ErrNotFound},
		{"invalid accessor", 400, `{"errors":["invalid accessor"]}`, vault.ErrNotFound},
		{"sealed", 503, `{"errors":["Vault is sealed"]}`, vault.ErrUnavailable},
		{"internal error", 500, `{"errors":["internal error"]}`, vault.ErrUnavailable},
		{"rate limited", 429, `{"errors":["rate limit quota exceeded"]}`, vault.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeVault(t, map[string]http.HandlerFunc{"/v1/auth/token/lookup-accessor": reply(tt.status, tt.body)})
			iss := newIssuer(t, f.srv.URL, "t", nil)
			_, _, err := iss.LookupAccessor(t.Context(), "acc")
			if !errors.Is(err, tt.want) {
				t.Fatalf("LookupAccessor() err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "auth/token/lookup-accessor") {
				t.Errorf("LookupAccessor() err = %q, want it to name the Vault path", err)
			}
		})
	}
	t.Run("other client errors carry no sentinel", func(t *testing.T) {
		t.Parallel()
		f := newFakeVault(t, map[string]http.HandlerFunc{"/v1/auth/token/lookup-accessor": reply(400, `{"errors":["missing accessor"]}`)})
		iss := newIssuer(t, f.srv.URL, "t", nil)
		_, _, err := iss.LookupAccessor(t.Context(), "acc")
		for _, s := range []error{vault.ErrDenied, vault.ErrNotFound, vault.ErrUnavailable, vault.ErrOverGrant} {
			if errors.Is(err, s) {
				t.Errorf("LookupAccessor() err = %v, should not wrap %v", err, s)
			}
		}
	})
	t.Run("caller cancellation is not unavailability", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t, closedAddr(t), "t", nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, _, err := iss.LookupAccessor(ctx, "acc")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("LookupAccessor(canceled) err = %v, want %v", err, context.Canceled)
		}
	})
}

// pemCert encodes a DER certificate as PEM.
func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
