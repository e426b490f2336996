package spiffe_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
	"github.com/writ-dev/writ/internal/spiretest"
	"github.com/writ-dev/writ/internal/testenv"
)

func TestLoadJWTBundle(t *testing.T) {
	t.Parallel()
	a := spiffetest.NewJWTAuthority(t, testTD)
	dir := t.TempDir()
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var jwk map[string]any
	if err := json.Unmarshal(a.JWK(t), &jwk); err != nil {
		t.Fatal(err)
	}
	delete(jwk, "use")
	plainJWKS, _ := json.Marshal(map[string]any{"keys": []any{jwk}})
	// An X.509 authority entry has no "kid": a plain-JWKS parser would
	// refuse it, the SPIFFE bundle parser skips it for JWT keys.
	ca := newCA(t)
	caCert := ca.Bundle().X509Authorities()[0]
	x509Entry, err := json.Marshal(jose.JSONWebKey{Key: caCert.PublicKey, Certificates: []*x509.Certificate{caCert}, Use: "x509-svid"})
	if err != nil {
		t.Fatal(err)
	}
	x509Only, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{x509Entry}})
	var mixed map[string]any
	_ = json.Unmarshal(x509Only, &mixed)
	mixed["keys"] = append(mixed["keys"].([]any), json.RawMessage(a.JWK(t)))
	mixedJSON, _ := json.Marshal(mixed)

	tests := []struct {
		name     string
		path     string
		wantKeys int
		wantErr  error
	}{
		{name: "SPIFFE bundle with JWT key", path: write("spiffe.json", a.BundleJSON(t)), wantKeys: 1},
		{name: "SPIFFE bundle with X.509 and JWT authorities", path: write("mixed.json", mixedJSON), wantKeys: 1},
		{name: "plain JWKS", path: write("jwks.json", plainJWKS), wantKeys: 1},
		{name: "X.509 authorities only", path: write("x509.json", x509Only), wantErr: spiffe.ErrInvalidBundle},
		{name: "no keys", path: write("empty.json", []byte(`{"keys": []}`)), wantErr: spiffe.ErrInvalidBundle},
		{name: "not JSON", path: write("pem.json", []byte("-----BEGIN CERTIFICATE-----")), wantErr: spiffe.ErrInvalidBundle},
		{name: "missing file", path: filepath.Join(dir, "nope.json"), wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := spiffe.LoadJWTBundle(testTD, tt.path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("LoadJWTBundle() err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadJWTBundle() err = %v", err)
			}
			if got := len(b.JWTAuthorities()); got != tt.wantKeys || !b.HasJWTAuthority(a.KeyID()) {
				t.Errorf("LoadJWTBundle() has %d keys (ours: %v), want %d", got, b.HasJWTAuthority(a.KeyID()), tt.wantKeys)
			}
			if b.TrustDomain() != testTD {
				t.Errorf("TrustDomain() = %v, want %v", b.TrustDomain(), testTD)
			}
		})
	}
}

// TestJWTBundleFile_Reload checks that a rotated key file is picked up
// without a restart and that a broken file keeps the previous keys.
func TestJWTBundleFile_Reload(t *testing.T) {
	t.Parallel()
	oldKey, newKey := spiffetest.NewJWTAuthority(t, testTD), spiffetest.NewJWTAuthority(t, testTD)
	path := filepath.Join(t.TempDir(), "jwt-bundle.json")
	replace := func(content []byte) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	replace(oldKey.BundleJSON(t))
	var logs syncBuffer
	src, err := spiffe.NewJWTBundleFileSource(context.Background(), spiffe.JWTBundleFileConfig{
		Path: path, TrustDomain: testTD, Interval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	has := func(a *spiffetest.JWTAuthority) bool {
		b, err := src.GetJWTBundleForTrustDomain(testTD)
		return err == nil && b.HasJWTAuthority(a.KeyID())
	}
	// The source re-reads the file on its own goroutine: poll.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, what, cond)
	}
	if !has(oldKey) {
		t.Fatal("initial bundle lacks the key in the file")
	}
	if _, err := src.GetJWTBundleForTrustDomain(spiffeid.RequireTrustDomainFromString("foreign.example")); err == nil {
		t.Error("GetJWTBundleForTrustDomain(foreign) err = nil, want an error")
	}

	replace(newKey.BundleJSON(t))
	waitFor("the rotated key", func() bool { return has(newKey) && !has(oldKey) })

	replace([]byte("not json"))
	waitFor("the broken file to be refused", func() bool { return strings.Contains(logs.String(), "reload of JWT bundle file failed") })
	if !has(newKey) {
		t.Error("a broken file replaced the keys in service")
	}

	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.GetJWTBundleForTrustDomain(testTD); !errors.Is(err, spiffe.ErrClosed) {
		t.Errorf("GetJWTBundleForTrustDomain() after Close err = %v, want ErrClosed", err)
	}
}

func TestNewJWTBundleFileSource_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     spiffe.JWTBundleFileConfig
		wantErr error
	}{
		{name: "no path", cfg: spiffe.JWTBundleFileConfig{TrustDomain: testTD}, wantErr: spiffe.ErrConfig},
		{name: "no trust domain", cfg: spiffe.JWTBundleFileConfig{Path: "x.json"}, wantErr: spiffe.ErrConfig},
		{name: "negative interval", cfg: spiffe.JWTBundleFileConfig{Path: "x.json", TrustDomain: testTD, Interval: -time.Second}, wantErr: spiffe.ErrConfig},
		{name: "missing file", cfg: spiffe.JWTBundleFileConfig{Path: filepath.Join(t.TempDir(), "x.json"), TrustDomain: testTD}, wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := spiffe.NewJWTBundleFileSource(context.Background(), tt.cfg); !errors.Is(err, tt.wantErr) {
				t.Errorf("NewJWTBundleFileSource() err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestNewWorkloadJWTBundleSource_BadAddress(t *testing.T) {
	t.Parallel()
	for _, socket := range []string{"", "/no/scheme.sock", "http://x"} {
		if _, err := spiffe.NewWorkloadJWTBundleSource(context.Background(), socket); !errors.Is(err, spiffe.ErrConfig) {
			t.Errorf("NewWorkloadJWTBundleSource(%q) err = %v, want ErrConfig", socket, err)
		}
	}
}

// TestJWTVerifier_SPIRE verifies JWT-SVIDs minted by a real SPIRE agent
// with keys from the agent's Workload API.
func TestJWTVerifier_SPIRE(t *testing.T) {
	t.Parallel()
	s := spiretest.Start(t, spiretest.Options{})
	id := s.ID(t, "/ns/prod/sa/api")
	s.CreateEntry(t, id.String(), fmt.Sprintf("unix:uid:%d", os.Getuid()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.WaitForSVID(t, ctx, id.String())

	bundles, err := spiffe.NewWorkloadJWTBundleSource(ctx, s.WorkloadSocket())
	if err != nil {
		t.Fatalf("NewWorkloadJWTBundleSource() err = %v", err)
	}
	t.Cleanup(func() { _ = bundles.Close() })
	v, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{Bundles: bundles, TrustDomain: s.TrustDomain(), Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(aud string) string {
		t.Helper()
		svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: aud}, workloadapi.WithAddr(s.WorkloadSocket()))
		if err != nil {
			t.Fatalf("FetchJWTSVID(%q) err = %v", aud, err)
		}
		return svid.Marshal()
	}
	if got, err := v.VerifyJWTSVID(ctx, fetch(testAudience)); err != nil || got != id {
		t.Errorf("VerifyJWTSVID(SPIRE token) = %v, %v; want %v, nil", got, err, id)
	}
	if _, err := v.VerifyJWTSVID(ctx, fetch("spiffe://example.org/someone-else")); !errors.Is(err, spiffe.ErrInvalidJWTSVID) {
		t.Errorf("VerifyJWTSVID(SPIRE token for another audience) err = %v, want ErrInvalidJWTSVID", err)
	}

	// The same keys from a file, as `spire-server bundle show -format
	// spiffe` writes it for hosts without an agent.
	path := filepath.Join(t.TempDir(), "bundle.json")
	if err := os.WriteFile(path, s.BundleJSON(t), 0o600); err != nil {
		t.Fatal(err)
	}
	fileBundles, err := spiffe.NewJWTBundleFileSource(ctx, spiffe.JWTBundleFileConfig{Path: path, TrustDomain: s.TrustDomain()})
	if err != nil {
		t.Fatalf("NewJWTBundleFileSource(SPIRE bundle) err = %v", err)
	}
	t.Cleanup(func() { _ = fileBundles.Close() })
	fv, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{Bundles: fileBundles, TrustDomain: s.TrustDomain(), Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fv.VerifyJWTSVID(ctx, fetch(testAudience)); err != nil || got != id {
		t.Errorf("VerifyJWTSVID(SPIRE token, file bundle) = %v, %v; want %v, nil", got, err, id)
	}
}
