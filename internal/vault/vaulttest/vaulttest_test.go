package vaulttest_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/internal/vault/vaulttest"
)

func TestStart(t *testing.T) {
	t.Parallel()
	a := vaulttest.Start(t)
	b := vaulttest.Start(t)
	if a.Addr == b.Addr || a.RootToken == b.RootToken {
		t.Errorf("two servers share Addr %q or RootToken", a.Addr)
	}
	h, err := a.Client.Sys().HealthWithContext(t.Context())
	if err != nil || !h.Initialized || h.Sealed || h.Version != vaulttest.Version {
		t.Fatalf("health = %+v, %v; want an initialized, unsealed Vault %s", h, err, vaulttest.Version)
	}
}

func TestServer_TokenRole(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.TokenRole(t, "demo", 5*time.Minute)
	role, err := s.Client.Logical().ReadWithContext(t.Context(), "auth/token/roles/demo")
	if err != nil || role == nil {
		t.Fatalf("read role = %v, %v", role, err)
	}
	if got, _ := role.Data["token_explicit_max_ttl"].(json.Number).Int64(); got != 300 {
		t.Errorf("token_explicit_max_ttl = %d, want 300", got)
	}
	if orphan, _ := role.Data["orphan"].(bool); !orphan {
		t.Errorf("orphan = false, want true")
	}
	tok := s.Token(t, "writ-test-demo")
	// Without the default policy the token cannot even look itself up.
	info, err := s.Client.Auth().Token().LookupWithContext(t.Context(), tok)
	if err != nil {
		t.Fatalf("lookup token: %v", err)
	}
	if p, _ := info.Data["policies"].([]any); len(p) != 1 || p[0] != "writ-test-demo" {
		t.Errorf("token policies = %v, want [writ-test-demo]", p)
	}
}

func TestStartTLS(t *testing.T) {
	t.Parallel()
	s := vaulttest.StartTLS(t)
	if !strings.HasPrefix(s.Addr, "https://") || s.CACertFile == "" {
		t.Fatalf("StartTLS() Addr = %q, CACertFile = %q; want https and a CA file", s.Addr, s.CACertFile)
	}
	h, err := s.Client.Sys().HealthWithContext(t.Context())
	if err != nil || !h.Initialized || h.Sealed {
		t.Fatalf("health over TLS = %+v, %v", h, err)
	}
	if _, err := s.ClientWithToken(t, s.RootToken).Auth().Token().LookupSelfWithContext(t.Context()); err != nil {
		t.Errorf("ClientWithToken over TLS: %v", err)
	}
}

func TestServer_AppRole(t *testing.T) {
	t.Parallel()
	s := vaulttest.Start(t)
	s.Policy(t, "p", `path "secret/*" { capabilities = ["read"] }`)
	roleID, secretID := s.AppRole(t, "svc", time.Minute, 2*time.Minute, "p")
	s.AppRole(t, "svc2", time.Minute, 2*time.Minute, "p") // auth/approle is enabled once
	login, err := s.ClientWithToken(t, "").Logical().WriteWithContext(t.Context(), "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil || login == nil || login.Auth == nil {
		t.Fatalf("approle login = %v, %v", login, err)
	}
	if login.Auth.LeaseDuration != 60 || !slices.Contains(login.Auth.Policies, "p") {
		t.Errorf("login ttl = %d, policies = %v; want 60 and p", login.Auth.LeaseDuration, login.Auth.Policies)
	}
}
