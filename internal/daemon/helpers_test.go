package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

var (
	testTD       = spiffeid.RequireTrustDomainFromString("example.org")
	testBrokerID = spiffeid.RequireFromPath(testTD, "/writd")
	testWorkload = spiffeid.RequireFromPath(testTD, "/ns/orders/api")
)

// testPolicy has an auto-approved entitlement and one that needs a person's
// approval, so that a workload can wait in WatchRequest.
const testPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: orders
    owner: orders-team
    purpose: orders API token
    max_ttl: 15m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {jwt: {audience: [orders-api]}}
    approval: {mode: auto}
  - name: orders-approved
    owner: orders-team
    purpose: orders API token after review
    max_ttl: 15m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {jwt: {audience: [orders-api]}}
    approval:
      mode: approvers
      stages:
        - {groups: [dba], min: 1}
      window: 1h
`

// testEnv is a dev CA with the broker's SVID files and a workload SVID.
type testEnv struct {
	dir      string
	ca       *devca.CA
	files    devca.Files
	workload memSource
}

// memSource serves one SVID and bundle from memory.
type memSource struct {
	*x509svid.SVID
	*x509bundle.Bundle
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	dir := t.TempDir()
	ca, err := devca.New(testTD)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(testBrokerID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := devca.WriteSVID(filepath.Join(dir, "svid"), svid, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	wl, err := ca.Issue(testWorkload, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{dir: dir, ca: ca, files: files, workload: memSource{wl, ca.Bundle()}}
}

// config returns a valid configuration: workload listener and HTTP on
// loopback port 0, no admin listener.
func (e *testEnv) config(t *testing.T) Config {
	t.Helper()
	policyFile := filepath.Join(e.dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.JWT.Issuer = "https://writ.example.org"
	cfg.SVID = SVIDConfig{CertFile: e.files.Cert, KeyFile: e.files.Key, BundleFile: e.files.Bundle, ReloadInterval: time.Minute}
	cfg.Policy = policyFile
	cfg.DataDir = filepath.Join(e.dir, "data")
	cfg.Log = LogConfig{Level: "debug", Format: "text"}
	cfg.ShutdownTimeout = time.Minute
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	return cfg
}

// dial connects to the workload listener as the test workload.
func (e *testEnv) dial(t *testing.T, d *Daemon) brokerv1.BrokerServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(d.GRPCAddr.String(),
		grpc.WithTransportCredentials(spiffe.ClientCredentials(e.workload, tlsconfig.AuthorizeID(testBrokerID))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return brokerv1.NewBrokerServiceClient(cc)
}

// start builds a daemon from cfg; it is shut down when the test ends.
func start(t *testing.T, ctx context.Context, cfg Config, opts Options) *Daemon {
	t.Helper()
	d, err := New(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { _ = d.Shutdown() })
	return d
}

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Close implements spiffe.Source.
func (memSource) Close() error { return nil }
