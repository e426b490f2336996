package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func TestConfig_ValidateJWTSVID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exists := filepath.Join(dir, "jwt-bundle.json")
	if err := os.WriteFile(exists, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	withSocket := func(c *Config) {
		c.SVID = SVIDConfig{WorkloadAPISocket: "unix:///run/spire/agent.sock"}
	}
	withFiles := func(c *Config) {
		c.SVID = SVIDConfig{CertFile: "testdata/exists.pem", KeyFile: "testdata/exists.pem", BundleFile: "testdata/exists.pem"}
	}
	listener := &JWTSVIDConfig{Listen: "127.0.0.1:8445", Audience: "spiffe://example.org/writd"}

	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" means valid
	}{
		{name: "no jwt_svid", edit: withSocket},
		{name: "with the Workload API", edit: func(c *Config) { withSocket(c); c.JWTSVID = listener }},
		{name: "with PEM files and a JWT bundle file", edit: func(c *Config) {
			withFiles(c)
			c.SVID.JWTBundleFile = exists
			c.JWTSVID = listener
		}},
		{name: "audience required", edit: func(c *Config) {
			withSocket(c)
			c.JWTSVID = &JWTSVIDConfig{Listen: "127.0.0.1:8445"}
		}, wantErr: "jwt_svid.audience: is required"},
		{name: "audience with spaces", edit: func(c *Config) {
			withSocket(c)
			c.JWTSVID = &JWTSVIDConfig{Listen: "127.0.0.1:8445", Audience: "a b"}
		}, wantErr: "jwt_svid.audience: \"a b\" must not contain spaces"},
		{name: "listen must be host:port", edit: func(c *Config) {
			withSocket(c)
			c.JWTSVID = &JWTSVIDConfig{Listen: "8445", Audience: "writd"}
		}, wantErr: `jwt_svid.listen: "8445" is not host:port`},
		{name: "PEM files need a JWT bundle file", edit: func(c *Config) {
			withFiles(c)
			c.JWTSVID = listener
		}, wantErr: "svid.jwt_bundle_file: is required with jwt_svid and SVID files"},
		{name: "JWT bundle file must exist", edit: func(c *Config) {
			withFiles(c)
			c.SVID.JWTBundleFile = filepath.Join(dir, "nope.json")
			c.JWTSVID = listener
		}, wantErr: "svid.jwt_bundle_file: stat"},
		{name: "JWT bundle file with the Workload API", edit: func(c *Config) {
			withSocket(c)
			c.SVID.JWTBundleFile = exists
			c.JWTSVID = listener
		}, wantErr: "svid.jwt_bundle_file: is for PEM files"},
		{name: "JWT bundle file without jwt_svid", edit: func(c *Config) {
			withFiles(c)
			c.SVID.JWTBundleFile = exists
		}, wantErr: "svid.jwt_bundle_file: is used only by jwt_svid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.Policy = "p.yaml"
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

const jwtSVIDTestPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: orders
    owner: team-orders
    purpose: test
    max_ttl: 15m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {jwt: {audience: [orders-api]}}
    approval: {mode: auto}
`

// TestStart_JWTSVIDFiles runs the broker in-process with PEM SVID files and
// a JWT bundle file, and calls the JWT-SVID listener as a workload behind a
// TLS-terminating proxy would. (internal/e2e does the same with SPIRE.)
func TestStart_JWTSVIDFiles(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	brokerID := spiffeid.RequireFromPath(td, "/writd")
	workload := spiffeid.RequireFromPath(td, "/ns/orders/api")
	dir := t.TempDir()

	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(brokerID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := devca.WriteSVID(filepath.Join(dir, "svid"), svid, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	keys := spiffetest.NewJWTAuthority(t, td)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = ""
	cfg.JWT.Issuer = "https://writ.example.org"
	cfg.SVID = SVIDConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle,
		JWTBundleFile: write("jwt-bundle.json", keys.BundleJSON(t)), ReloadInterval: time.Second}
	cfg.Policy = write("policy.yaml", []byte(jwtSVIDTestPolicy))
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.JWTSVID = &JWTSVIDConfig{Listen: "127.0.0.1:0", Audience: brokerID.String()}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := New(ctx, cfg, Options{})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	shutdown := sync.OnceFunc(m.Shutdown)
	t.Cleanup(shutdown)
	if m.JWTSVIDAddr == nil {
		t.Fatal("JWTSVIDAddr is nil: the JWT-SVID listener did not open")
	}

	cc, err := grpc.NewClient(m.JWTSVIDAddr.String(),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(ca.Bundle(), tlsconfig.AuthorizeID(brokerID)))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := brokerv1.NewBrokerServiceClient(cc)
	call := func(token string) error {
		ctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		_, err := client.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
		return err
	}
	now := time.Now()
	valid := spiffetest.JWTClaims{Subject: workload.String(), Audience: []string{brokerID.String()}, Expiry: now.Add(5 * time.Minute)}
	if err := call(keys.Mint(t, valid)); err != nil {
		t.Fatalf("IssueCredential(valid JWT-SVID) = %v, want a credential", err)
	}
	wrongAud := valid
	wrongAud.Audience = []string{"spiffe://example.org/other"}
	if got := status.Code(call(keys.Mint(t, wrongAud))); got != codes.Unauthenticated {
		t.Errorf("IssueCredential(wrong audience) code = %v, want Unauthenticated", got)
	}

	shutdown()
	if err := call(keys.Mint(t, valid)); status.Code(err) != codes.Unavailable {
		t.Errorf("IssueCredential() after Shutdown = %v, want Unavailable: the listener must be closed", err)
	}
}
