package vault_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/testenv"
	"github.com/writ-dev/writ/internal/vault"
	"github.com/writ-dev/writ/internal/vault/vaulttest"
)

// tokenIssuer returns a TokenIssuer sharing c.
func tokenIssuer(t *testing.T, c *vault.Client) *vault.TokenIssuer {
	t.Helper()
	iss, err := vault.NewTokenIssuerWithClient(c)
	if err != nil {
		t.Fatalf("NewTokenIssuerWithClient() err = %v", err)
	}
	return iss
}

// issuerServer starts Vault with token role "app" and the policy
// "writ-issuer" (vault.IssuerPolicy for it).
func issuerServer(t *testing.T, start func(testing.TB) *vaulttest.Server) *vaulttest.Server {
	t.Helper()
	srv := start(t)
	srv.TokenRole(t, roleApp, 0)
	srv.Policy(t, "writ-issuer", vault.IssuerPolicy(roleApp))
	return srv
}

// ownAccessors returns the accessors of live tokens created by AppRole
// role name.
func ownAccessors(t *testing.T, srv *vaulttest.Server, role string) []string {
	t.Helper()
	list, err := srv.Client.Logical().ListWithContext(t.Context(), "auth/token/accessors")
	if err != nil {
		t.Fatalf("list accessors: %v", err)
	}
	var out []string
	keys, _ := list.Data["keys"].([]any)
	for _, k := range keys {
		s, err := srv.Client.Auth().Token().LookupAccessorWithContext(t.Context(), k.(string))
		if err != nil {
			continue
		}
		if meta, ok := s.Data["meta"].(map[string]any); ok && meta["role_name"] == role {
			out = append(out, k.(string))
		}
	}
	return out
}

func TestClient_AppRole(t *testing.T) {
	t.Parallel()
	srv := issuerServer(t, vaulttest.Start)

	t.Run("keeps issuing across its own token's expiry", func(t *testing.T) {
		t.Parallel()
		// TTLs leave the renewal (at about 2/3 of the lease) seconds of
		// slack, so a loaded CI machine does not turn it into a failure.
		roleID, secretID := srv.AppRole(t, "writd-short", 8*time.Second, 16*time.Second, "writ-issuer")
		var logs syncBuffer
		var failures atomic.Int32
		c := newClient(t, vault.ClientConfig{
			Address:        srv.Addr,
			Auth:           vault.AuthConfig{Method: vault.AuthAppRole, RoleID: roleID, SecretID: secretID},
			OnRenewFailure: func(error) { failures.Add(1) },
		}, &logs)
		iss := tokenIssuer(t, c)
		// The token's TTLs are Vault's, on the wall clock of a real
		// process (no clock to inject): keep issuing until the client has
		// renewed its token and logged in again past token_max_ttl.
		// One token every 250ms at most, as a steady load.
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("client logs:\n%s", logs.String())
			}
		})
		issued := 0
		var last time.Time
		testenv.Eventually(t, 20*time.Second, "a renewal of the 8s token and a second login within 20s (16s token_max_ttl)", func() bool {
			if time.Since(last) >= 250*time.Millisecond {
				if _, err := iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute)); err != nil {
					t.Fatalf("Issue() after %d tokens err = %v", issued, err)
				}
				issued, last = issued+1, time.Now()
				if !c.Healthy() {
					t.Errorf("Healthy() = false while Vault is up")
				}
			}
			l := logs.String()
			return strings.Count(l, "vault login succeeded") >= 2 && strings.Contains(l, "vault token renewed")
		})
		// And on the token from the second login.
		if _, err := iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute)); err != nil {
			t.Fatalf("Issue() after the second login err = %v", err)
		}
		if n := failures.Load(); n != 0 {
			t.Errorf("OnRenewFailure called %d times, want 0", n)
		}
	})

	t.Run("logs in again when its token is revoked", func(t *testing.T) {
		t.Parallel()
		roleID, secretID := srv.AppRole(t, "writd-revoked", time.Hour, time.Hour, "writ-issuer")
		c := newClient(t, vault.ClientConfig{Address: srv.Addr, Auth: vault.AuthConfig{Method: vault.AuthAppRole, RoleID: roleID, SecretID: secretID}}, nil)
		iss := tokenIssuer(t, c)
		own := ownAccessors(t, srv, "writd-revoked")
		if len(own) != 1 {
			t.Fatalf("found %d tokens of the client, want 1", len(own))
		}
		if err := srv.Client.Auth().Token().RevokeAccessorWithContext(t.Context(), own[0]); err != nil {
			t.Fatalf("revoke the client's token: %v", err)
		}
		if _, err := iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute)); err != nil {
			t.Fatalf("Issue() after the client's token was revoked err = %v, want a new login and success", err)
		}
		if !c.Healthy() {
			t.Errorf("Healthy() = false after logging in again")
		}
	})

	t.Run("a genuine denial is not taken for a lost token", func(t *testing.T) {
		t.Parallel()
		roleID, secretID := srv.AppRole(t, "writd-denied", time.Hour, time.Hour, "writ-issuer")
		var logs syncBuffer
		c := newClient(t, vault.ClientConfig{Address: srv.Addr, Auth: vault.AuthConfig{Method: vault.AuthAppRole, RoleID: roleID, SecretID: secretID}}, &logs)
		_, err := tokenIssuer(t, c).Issue(t.Context(), tokenGrant(grantID(), "not-in-policy", time.Minute))
		if !errors.Is(err, vault.ErrDenied) {
			t.Fatalf("Issue(role outside the policy) err = %v, want %v", err, vault.ErrDenied)
		}
		if n := strings.Count(logs.String(), "vault login succeeded"); n != 1 {
			t.Errorf("%d logins, want 1: a denial must not cause a new login", n)
		}
	})

	t.Run("bad credentials fail at NewClient", func(t *testing.T) {
		t.Parallel()
		roleID, _ := srv.AppRole(t, "writd-bad", time.Hour, time.Hour, "writ-issuer")
		_, err := vault.NewClient(t.Context(), vault.ClientConfig{
			Address: srv.Addr,
			Auth:    vault.AuthConfig{Method: vault.AuthAppRole, RoleID: roleID, SecretID: "00000000-0000-0000-0000-000000000000"},
		})
		if !errors.Is(err, vault.ErrDenied) {
			t.Fatalf("NewClient(wrong secret id) err = %v, want %v", err, vault.ErrDenied)
		}
	})
}

// svidCert converts an X509-SVID to a TLS certificate.
func svidCert(svid *x509svid.SVID) *tls.Certificate {
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

// testCA is a devca CA persisted in a directory, whose key the test reads
// back to mint SVIDs with a subject common name, which devca does not set
// but Vault 1.13's cert auth requires (hashicorp/vault#6820).
type testCA struct {
	ca   *devca.CA
	cert *x509.Certificate
	key  crypto.Signer
}

// newTestCA creates a devca CA for example.org.
func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := devca.Create(dir, spiffeid.RequireTrustDomainFromString("example.org"))
	if err != nil {
		t.Fatalf("devca.Create() err = %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, devca.KeyFileName))
	if err != nil {
		t.Fatalf("read CA key: %v", err)
	}
	block, _ := pem.Decode(data)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("parse CA key: %v", err)
	}
	return &testCA{ca: ca, cert: ca.Certificate(), key: key.(crypto.Signer)}
}

// svid mints an X509-SVID for id. A non-empty cn becomes the subject common
// name; an empty one gives devca's own SVID, which has none.
func (c *testCA) svid(t *testing.T, id, cn string) *tls.Certificate {
	t.Helper()
	sid := spiffeid.RequireFromString(id)
	if cn == "" {
		svid, err := c.ca.Issue(sid, devca.IssueOptions{TTL: time.Hour})
		if err != nil {
			t.Fatalf("devca Issue(%s) err = %v", id, err)
		}
		return svidCert(svid)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		URIs:                  []*url.URL{sid.URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatalf("create SVID: %v", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestClient_CertAuth(t *testing.T) {
	t.Parallel()
	srv := issuerServer(t, vaulttest.StartTLS)
	ca, other := newTestCA(t), newTestCA(t)
	srv.CertRole(t, "writ", ca.cert, []string{"spiffe://example.org/writd"}, time.Hour, "writ-issuer")
	certClient := func(t *testing.T, get func() (*tls.Certificate, error)) (*vault.Client, error) {
		t.Helper()
		c, err := vault.NewClient(t.Context(), vault.ClientConfig{
			Address:    srv.Addr,
			CACertFile: srv.CACertFile,
			Auth:       vault.AuthConfig{Method: vault.AuthCert, CertRole: "writ", ClientCertificate: get},
		})
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
		return c, err
	}

	t.Run("the broker's svid logs in and follows rotation", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		current := ca.svid(t, "spiffe://example.org/writd", "writd")
		calls := 0
		c, err := certClient(t, func() (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			return current, nil
		})
		if err != nil {
			t.Fatalf("NewClient(cert) err = %v", err)
		}
		iss := tokenIssuer(t, c)
		if _, err := iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute)); err != nil {
			t.Fatalf("Issue() err = %v", err)
		}
		// Rotate the SVID, then force a new login by revoking the token.
		next := ca.svid(t, "spiffe://example.org/writd", "writd")
		mu.Lock()
		current = next
		rotated := calls
		mu.Unlock()
		for _, acc := range tokensFromPath(t, srv, "auth/cert/login") {
			if err := srv.Client.Auth().Token().RevokeAccessorWithContext(t.Context(), acc); err != nil {
				t.Fatalf("revoke the client's token: %v", err)
			}
		}
		if _, err := iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute)); err != nil {
			t.Fatalf("Issue() after rotation and token loss err = %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if calls <= rotated {
			t.Errorf("ClientCertificate not called for the new login (%d calls before, %d after)", rotated, calls)
		}
	})

	t.Run("refused certificates", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name     string
			cert     *tls.Certificate
			mentions string
		}{
			{"another workload of the trust domain", ca.svid(t, "spiffe://example.org/other", "other"), "auth/cert/login"},
			{"the right id from an unregistered ca", other.svid(t, "spiffe://example.org/writd", "writd"), "auth/cert/login"},
			{"an svid without a common name", ca.svid(t, "spiffe://example.org/writd", ""), "common name"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := certClient(t, func() (*tls.Certificate, error) { return tt.cert, nil })
				if !errors.Is(err, vault.ErrDenied) {
					t.Fatalf("NewClient() err = %v, want %v", err, vault.ErrDenied)
				}
				if !strings.Contains(err.Error(), tt.mentions) {
					t.Errorf("NewClient() err = %q, want it to mention %q", err, tt.mentions)
				}
			})
		}
	})
}

// tokensFromPath returns the accessors of live tokens created at the login
// path.
func tokensFromPath(t *testing.T, srv *vaulttest.Server, path string) []string {
	t.Helper()
	list, err := srv.Client.Logical().ListWithContext(t.Context(), "auth/token/accessors")
	if err != nil {
		t.Fatalf("list accessors: %v", err)
	}
	var out []string
	keys, _ := list.Data["keys"].([]any)
	for _, k := range keys {
		s, err := srv.Client.Auth().Token().LookupAccessorWithContext(t.Context(), k.(string))
		if err == nil && s.Data["path"] == path {
			out = append(out, k.(string))
		}
	}
	return out
}

// TestClient_Unavailable covers reliability cases T7 (Vault unreachable), T9
// (sealed) and T11 (Vault hangs): quick ErrUnavailable, a circuit breaker
// that opens and fails fast, and recovery with the same client.
func TestClient_Unavailable(t *testing.T) {
	t.Parallel()

	t.Run("unreachable vault opens the breaker and the same client recovers", func(t *testing.T) {
		t.Parallel()
		srv := issuerServer(t, vaulttest.Start)
		proxy := testenv.StartProxy(t, strings.TrimPrefix(srv.Addr, "http://"))
		c := newClient(t, vault.ClientConfig{
			Address: "http://" + proxy.Addr(),
			Auth:    vault.AuthConfig{Token: srv.Token(t, "writ-issuer")},
			Timeout: time.Second,
			Breaker: vault.BreakerConfig{Failures: 3, Cooldown: 2 * time.Second},
		}, nil)
		iss := tokenIssuer(t, c)
		issue := func() (time.Duration, error) {
			start := time.Now()
			_, err := iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute))
			return time.Since(start), err
		}
		if _, err := issue(); err != nil {
			t.Fatalf("Issue() through the proxy err = %v", err)
		}

		proxy.Down()
		opened := false
		for i := 0; i < 10 && !opened; i++ {
			took, err := issue()
			if !errors.Is(err, vault.ErrUnavailable) {
				t.Fatalf("Issue() with Vault unreachable err = %v, want %v", err, vault.ErrUnavailable)
			}
			if took > 2*time.Second {
				t.Errorf("Issue() with Vault unreachable took %s, want < 2s", took)
			}
			opened = errors.Is(err, vault.ErrCircuitOpen)
		}
		if !opened {
			t.Fatalf("breaker did not open after 10 failed calls")
		}
		if took, err := issue(); !errors.Is(err, vault.ErrCircuitOpen) || took > 50*time.Millisecond {
			t.Errorf("Issue() with the breaker open = %v after %s, want %v at once", err, took, vault.ErrCircuitOpen)
		}
		if c.Healthy() {
			t.Errorf("Healthy() = true with the breaker open")
		}

		proxy.Up()
		if _, err := issue(); !errors.Is(err, vault.ErrCircuitOpen) {
			t.Errorf("Issue() right after Vault came back err = %v, want %v until the cooldown passes", err, vault.ErrCircuitOpen)
		}
		testenv.Eventually(t, 10*time.Second, "Issue() to succeed after Vault came back", func() bool {
			_, err := issue()
			return err == nil
		})
		if !c.Healthy() {
			t.Errorf("Healthy() = false after recovery")
		}
	})

	t.Run("a hanging vault is bounded by the timeout and opens the breaker", func(t *testing.T) {
		t.Parallel()
		hang := hangingAddr(t)
		c := newClient(t, vault.ClientConfig{
			Address: hang, Auth: vault.AuthConfig{Token: "t"}, Timeout: 300 * time.Millisecond,
			Breaker: vault.BreakerConfig{Failures: 3, Cooldown: time.Minute},
		}, nil)
		iss := tokenIssuer(t, c)
		for i := range 3 {
			start := time.Now()
			_, _, err := iss.LookupAccessor(t.Context(), "acc")
			if !errors.Is(err, vault.ErrUnavailable) {
				t.Fatalf("LookupAccessor() #%d err = %v, want %v", i+1, err, vault.ErrUnavailable)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("LookupAccessor() #%d took %s", i+1, took)
			}
			if errors.Is(err, vault.ErrCircuitOpen) {
				return
			}
		}
		t.Errorf("breaker did not open after three timed-out calls with retries")
	})

	t.Run("the caller's deadline is honoured without retries past it", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, vault.ClientConfig{Address: hangingAddr(t), Auth: vault.AuthConfig{Token: "t"}, Timeout: 5 * time.Second}, nil)
		iss := tokenIssuer(t, c)
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := iss.LookupAccessor(ctx, "acc")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("LookupAccessor() err = %v, want %v", err, context.DeadlineExceeded)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("LookupAccessor() took %s with a 250ms deadline", took)
		}
	})

	t.Run("a sealed vault is unavailable and opens the breaker", func(t *testing.T) {
		t.Parallel()
		srv := issuerServer(t, vaulttest.Start)
		c := newClient(t, vault.ClientConfig{
			Address: srv.Addr, Auth: vault.AuthConfig{Token: srv.Token(t, "writ-issuer")},
			Breaker: vault.BreakerConfig{Failures: 2, Cooldown: time.Minute},
		}, nil)
		iss := tokenIssuer(t, c)
		if err := srv.Client.Sys().SealWithContext(t.Context()); err != nil {
			t.Fatalf("seal: %v", err)
		}
		_, err := iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute))
		if !errors.Is(err, vault.ErrUnavailable) {
			t.Fatalf("Issue() on a sealed Vault err = %v, want %v", err, vault.ErrUnavailable)
		}
		_, err = iss.Issue(t.Context(), tokenGrant(grantID(), roleApp, time.Minute))
		if !errors.Is(err, vault.ErrCircuitOpen) {
			t.Errorf("Issue() after repeated 503s err = %v, want %v", err, vault.ErrCircuitOpen)
		}
	})
}

// hangingAddr returns the URL of a listener that never accepts: requests
// get no answer, so only a timeout ends them.
func hangingAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return "http://" + l.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for logs
// written by the client's background goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
