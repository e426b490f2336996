// Package vaulttest runs a real Vault dev server for tests.
//
// Start (plain HTTP) and StartTLS (with a generated CA) look for the Vault
// binary in $WRIT_VAULT_BIN, then in
// <user cache dir>/writ/vault-v1.13.0/vault (build it with
// "bash .ci/tools.sh vault"). Without it, tests are skipped, or fail under
// WRIT_INTEGRATION=require (see internal/testenv).
package vaulttest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/writ-dev/writ/internal/testenv"
)

// Version is the Vault version the tests are written against.
const Version = "1.13.0"

// startTimeout bounds how long Start waits for a server to become healthy.
// A loaded two-core CI machine running tests with -race needs headroom.
const startTimeout = 60 * time.Second

// Server is a running "vault server -dev", stopped when the test ends.
type Server struct {
	// Addr is the server's URL, "http://127.0.0.1:PORT", or
	// "https://127.0.0.1:PORT" for StartTLS.
	Addr string
	// CACertFile is the PEM file of the CA that signed the server's TLS
	// certificate (StartTLS); empty for a plain-HTTP server.
	CACertFile string
	// RootToken is the dev server's root token.
	RootToken string
	// Client is an API client for Addr authenticated with RootToken, built
	// without reading VAULT_* environment variables.
	Client *api.Client

	authMu sync.Mutex // serializes enabling auth methods
}

// Binary returns the path of the Vault binary Start would run, and whether
// it exists.
func Binary() (path string, ok bool) {
	if p := os.Getenv("WRIT_VAULT_BIN"); p != "" {
		path = p
	} else {
		dir, err := os.UserCacheDir()
		if err != nil {
			return "", false
		}
		path = filepath.Join(dir, "writ", "vault-v"+Version, "vault")
	}
	fi, err := os.Stat(path)
	return path, err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Start runs a new Vault dev server on a free loopback port and waits until
// it is healthy. Each call starts its own server, so tests may run in
// parallel. The server is killed in t.Cleanup; if the test failed, its log is
// written to t.Log first.
func Start(t testing.TB) *Server {
	t.Helper()
	return startServer(t, false)
}

// StartTLS is Start with a TLS listener ("vault server -dev -dev-tls"):
// Vault generates a CA and a certificate for 127.0.0.1, and Server.CACertFile
// names the CA. The listener asks for client certificates without requiring
// them, so Vault's cert auth method works.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return startServer(t, true)
}

// startServer starts a dev server, retrying when its port was taken.
func startServer(t testing.TB, useTLS bool) *Server {
	t.Helper()
	bin, ok := Binary()
	if !ok {
		testenv.Missing(t, "vault", fmt.Sprintf("no Vault %s binary at %s; build it with: bash .ci/tools.sh vault (or set WRIT_VAULT_BIN)", Version, bin))
	}
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		s, err := start(t, bin, useTLS)
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("vaulttest: start vault: %v", lastErr)
	return nil
}

// errPortTaken reports that another process took the port between picking
// and binding it.
var errPortTaken = errors.New("listen address already in use")

// start runs one server attempt.
func start(t testing.TB, bin string, useTLS bool) (*Server, error) {
	t.Helper()
	dir := t.TempDir()
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	token := "root-" + testenv.RandomHex(16)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(dir, "vault.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"server", "-dev",
		"-dev-listen-address=" + addr,
		"-dev-root-token-id=" + token,
		"-dev-no-store-token",
	}
	scheme, caFile := "http", ""
	if useTLS {
		certDir := filepath.Join(dir, "tls")
		if err := os.Mkdir(certDir, 0o700); err != nil {
			return nil, err
		}
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certDir)
		scheme, caFile = "https", filepath.Join(certDir, "vault-ca.pem")
	}
	cmd := exec.Command(bin, args...)
	// A clean environment: no VAULT_* variables, and a private HOME.
	cmd.Env = []string{"HOME=" + dir, "TMPDIR=" + dir}
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
		logFile.Close()
	}
	dumpLog := func() {
		if data, err := os.ReadFile(logPath); err == nil {
			t.Logf("vault server log (%s):\n%s", logPath, data)
		}
	}

	s := &Server{Addr: scheme + "://" + addr, CACertFile: caFile, RootToken: token}
	if useTLS {
		// Vault writes its CA before it listens.
		if err := waitFile(caFile, exited); err != nil {
			stop()
			if data, _ := os.ReadFile(logPath); strings.Contains(string(data), "address already in use") {
				return nil, fmt.Errorf("%s: %w", addr, errPortTaken)
			}
			dumpLog()
			return nil, err
		}
	}
	s.Client, err = newClient(s.Addr, caFile, token)
	if err != nil {
		stop()
		return nil, err
	}
	if err := waitHealthy(s.Client, exited); err != nil {
		stop()
		if data, _ := os.ReadFile(logPath); strings.Contains(string(data), "address already in use") {
			return nil, fmt.Errorf("%s: %w", addr, errPortTaken)
		}
		dumpLog()
		return nil, fmt.Errorf("%w (exit: %v)", err, waitErr)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			dumpLog()
		}
	})
	return s, nil
}

// waitHealthy polls sys/health until the server is initialized, unsealed
// and active, the process exits, or startTimeout passes.
func waitHealthy(c *api.Client, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("vault exited before becoming healthy")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		h, err := c.Sys().HealthWithContext(ctx)
		cancel()
		switch {
		case err != nil:
			last = err
		case h.Initialized && !h.Sealed && !h.Standby:
			return nil
		default:
			last = fmt.Errorf("health: initialized=%v sealed=%v standby=%v", h.Initialized, h.Sealed, h.Standby)
		}
		select {
		case <-exited:
			return errors.New("vault exited before becoming healthy")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("vault not healthy after %s: %v", startTimeout, last)
}

// waitFile waits until path exists and is not empty, the process exits, or
// startTimeout passes.
func waitFile(path string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return nil
		}
		select {
		case <-exited:
			return errors.New("vault exited before writing its TLS CA")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("vault did not write %s within %s", path, startTimeout)
}

// newClient returns a client for addr with token that ignores VAULT_*
// environment variables and trusts the CA in caFile, if not empty.
func newClient(addr, caFile, token string) (*api.Client, error) {
	transport := &http.Transport{Proxy: nil}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("vault client: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("vault client: no certificate in %s", caFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c, err := api.NewClient(&api.Config{
		Address:    addr,
		HttpClient: &http.Client{Transport: transport, Timeout: 30 * time.Second},
		MaxRetries: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}})
	c.ClearNamespace()
	c.SetWrappingLookupFunc(func(string, string) string { return "" })
	c.SetToken(token)
	return c, nil
}

// ClientWithToken returns a client for the server authenticated with token.
func (s *Server) ClientWithToken(t testing.TB, token string) *api.Client {
	t.Helper()
	c, err := newClient(s.Addr, s.CACertFile, token)
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	return c
}

// Policy writes the ACL policy name with the HCL rules.
func (s *Server) Policy(t testing.TB, name, rules string) {
	t.Helper()
	if err := s.Client.Sys().PutPolicyWithContext(t.Context(), name, rules); err != nil {
		t.Fatalf("vaulttest: put policy %s: %v", name, err)
	}
}

// TokenRole creates the orphan token role name whose tokens get only the
// policy "writ-test-<name>" (read on secret/data/<name>/*, also created
// here). A positive maxTTL becomes the role's token_explicit_max_ttl.
func (s *Server) TokenRole(t testing.TB, name string, maxTTL time.Duration) {
	t.Helper()
	policy := "writ-test-" + name
	s.Policy(t, policy, fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", "secret/data/"+name+"/*"))
	data := map[string]any{
		"allowed_policies": []string{policy},
		"orphan":           true,
	}
	if maxTTL > 0 {
		data["token_explicit_max_ttl"] = int64(maxTTL / time.Second)
	}
	if _, err := s.Client.Logical().WriteWithContext(t.Context(), "auth/token/roles/"+name, data); err != nil {
		t.Fatalf("vaulttest: create token role %s: %v", name, err)
	}
}

// Token creates an orphan token with exactly the given policies (not the
// default policy unless listed), valid for an hour, and returns it.
func (s *Server) Token(t testing.TB, policies ...string) string {
	t.Helper()
	if len(policies) == 0 {
		policies = []string{"default"}
	}
	sec, err := s.Client.Auth().Token().CreateOrphanWithContext(t.Context(), &api.TokenCreateRequest{
		Policies:        policies,
		NoDefaultPolicy: true,
		TTL:             "1h",
		DisplayName:     "vaulttest",
	})
	if err != nil {
		t.Fatalf("vaulttest: create token with policies %v: %v", policies, err)
	}
	return sec.Auth.ClientToken
}
