package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/testenv"
)

// agentPolicy mints 3-second credentials, so renewals happen within a test.
const agentPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: demo
    owner: team
    purpose: test
    max_ttl: 3s
    requesters: [spiffe://example.org/app]
    issuer: {jwt: {audience: [demo]}}
    approval: {mode: auto}
  - name: other
    owner: team
    purpose: test
    max_ttl: 3s
    requesters: [spiffe://example.org/app]
    issuer: {jwt: {audience: [other]}}
    approval: {mode: auto}
  - name: forbidden
    owner: team
    purpose: test
    max_ttl: 3s
    requesters: [spiffe://example.org/someone-else]
    issuer: {jwt: {audience: [demo]}}
    approval: {mode: auto}
`

var (
	agentTD       = spiffeid.RequireTrustDomainFromString("example.org")
	agentBrokerID = spiffeid.RequireFromPath(agentTD, "/writd")
	agentApp      = spiffeid.RequireFromPath(agentTD, "/app")
)

// countingIssuer mints numbered fake secrets that expire with the grant.
type countingIssuer struct {
	mu sync.Mutex
	n  int
}

func (f *countingIssuer) Issue(_ context.Context, g approval.Grant) (approval.Credential, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return approval.Credential{
		Ref:      approval.CredentialRef{Kind: g.Recipe.Kind, ID: fmt.Sprintf("ref-%d", f.n), Expires: g.Expires},
		Secret:   approval.Secret(fmt.Sprintf("secret-%d", f.n)),
		Data:     map[string]approval.Secret{"username": approval.Secret(fmt.Sprintf("user-%d", f.n))},
		IssuedAt: g.IssuedAt,
	}, nil
}

func (f *countingIssuer) Revoke(context.Context, approval.CredentialRef) error { return nil }

type agentMemSource struct {
	*x509svid.SVID
	*x509bundle.Bundle
}

func (agentMemSource) Close() error { return nil }

// agentBroker is a broker on loopback with real mTLS, a real bbolt ledger
// and a fake issuer, on the clock now (the test's fake clock, shared with the
// agent, so issue and expiry times move only when the test advances it). Stop and Start take its gRPC server
// down and up again on the same address.
type agentBroker struct {
	t       *testing.T
	ca      *devca.CA
	srv     *broker.Server
	addr    string
	svidDir string // the app workload's svid.pem, svid_key.pem, bundle.pem

	mu sync.Mutex
	gs *grpc.Server
}

func startAgentBroker(t *testing.T, now func() time.Time) *agentBroker {
	t.Helper()
	ca, err := devca.New(agentTD, devca.WithNow(time.Now))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("policy.yaml", []byte(agentPolicy))
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := audit.New(audit.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Config{Policy: pol, Ledger: ledger, Logger: slog.New(slog.DiscardHandler), Now: now,
		Issuers: map[approval.CredentialKind]broker.Issuer{approval.KindJWT: &countingIssuer{}}})
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(agentApp, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := devca.WriteSVID(filepath.Join(t.TempDir(), "app"), svid, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	b := &agentBroker{t: t, ca: ca, srv: srv, addr: "127.0.0.1:0", svidDir: filepath.Dir(files.Cert)}
	b.Start()
	t.Cleanup(func() {
		b.Stop()
		if _, err := audit.Verify(context.Background(), store); err != nil {
			t.Errorf("ledger does not verify: %v", err)
		}
		_ = store.Close()
	})
	return b
}

// Start serves on b.addr (a fresh port the first time, then the same one).
func (b *agentBroker) Start() {
	b.t.Helper()
	svid, err := b.ca.Issue(agentBrokerID, devca.IssueOptions{})
	if err != nil {
		b.t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(spiffe.ServerCredentials(agentMemSource{SVID: svid, Bundle: b.ca.Bundle()}, tlsconfig.AuthorizeMemberOf(agentTD))),
		grpc.ChainUnaryInterceptor(b.srv.UnaryInterceptor()), grpc.ChainStreamInterceptor(b.srv.StreamInterceptor()))
	b.srv.Register(gs)
	// The kernel may hold the old socket for a moment after Stop: poll the
	// bind (a condition on the OS, not on time passing; no clock to inject).
	var lis net.Listener
	testenv.Eventually(b.t, 5*time.Second, "the broker address "+b.addr+" to be free again", func() bool {
		lis, err = net.Listen("tcp", b.addr)
		return err == nil
	})
	b.addr = lis.Addr().String()
	go func() { _ = gs.Serve(lis) }()
	b.mu.Lock()
	b.gs = gs
	b.mu.Unlock()
}

// Stop stops serving; requests fail with UNAVAILABLE until Start.
func (b *agentBroker) Stop() {
	b.mu.Lock()
	gs := b.gs
	b.gs = nil
	b.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
}
