package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/broker/client"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/store/boltstore"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

const testPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: orders
    owner: team-orders
    purpose: test
    max_ttl: 10m
    requesters: [spiffe://example.org/app]
    issuer: {jwt: {audience: [orders-api]}}
    approval: {mode: auto}
  - name: db-admin
    owner: dba-team
    purpose: test
    max_ttl: 10m
    requesters: [spiffe://example.org/app]
    issuer: {jwt: {audience: [db]}}
    approval: {mode: approvers, stages: [{groups: [dba], min: 1}], window: 1h}
`

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	brokerID = spiffeid.RequireFromPath(td, "/writd")
	app      = spiffeid.RequireFromPath(td, "/app")
	stranger = spiffeid.RequireFromPath(td, "/stranger")
	start    = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
)

// clock is a settable clock shared by the broker and the client under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// fakeIssuer mints numbered fake secrets that expire with the grant. While
// gate is non-nil, Issue signals entered and waits for gate to close.
type fakeIssuer struct {
	mu      sync.Mutex
	n       int
	fail    error
	gate    chan struct{}
	entered chan struct{}
}

func (f *fakeIssuer) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	f.mu.Lock()
	gate, entered := f.gate, f.entered
	f.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			return approval.Credential{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return approval.Credential{}, f.fail
	}
	f.n++
	return approval.Credential{
		Ref:      approval.CredentialRef{Kind: g.Recipe.Kind, ID: fmt.Sprintf("ref-%d", f.n), Expires: g.Expires},
		Secret:   approval.Secret(fmt.Sprintf("secret-%d", f.n)),
		Data:     map[string]approval.Secret{"username": approval.Secret(fmt.Sprintf("user-%d", f.n))},
		IssuedAt: g.IssuedAt,
	}, nil
}

func (f *fakeIssuer) Revoke(context.Context, approval.CredentialRef) error { return nil }

func (f *fakeIssuer) setFail(err error) { f.mu.Lock(); f.fail = err; f.mu.Unlock() }

// hold makes Issue block until the returned release function is called;
// entered receives once per Issue call that blocks.
func (f *fakeIssuer) hold() (entered <-chan struct{}, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate, f.entered = make(chan struct{}), make(chan struct{}, 16)
	gate := f.gate
	var once sync.Once
	return f.entered, func() { once.Do(func() { close(gate) }) }
}

// memSource serves one SVID and bundle.
type memSource struct {
	*x509svid.SVID
	*x509bundle.Bundle
}

func (memSource) Close() error { return nil }

// testBroker is a broker on loopback with real mTLS, a real bbolt store and
// ledger, approvals, an admin listener where people sign in with a token
// that is their name, and a fake JWT issuer.
type testBroker struct {
	t         *testing.T
	ca        *devca.CA
	clock     *clock
	issuer    *fakeIssuer
	addr      string
	adminAddr string
	issues    atomic.Int64 // IssueCredential calls received
	watches   atomic.Int64 // WatchRequest streams opened
	stop      func()       // stops serving for good
	bounce    func()       // stops the workload listener and serves again on its address
}

// people the admin listener accepts: the token is the name.
var people = map[string]broker.Person{
	"alice": {Principal: "oidc:https://idp.test#alice", Groups: []string{"dba"}},
}

type tokenPeople struct{}

func (tokenPeople) VerifyPerson(_ context.Context, token string) (broker.Person, error) {
	if p, ok := people[token]; ok {
		return p, nil
	}
	return broker.Person{}, errors.New("unknown token")
}

func startBroker(t *testing.T) *testBroker {
	t.Helper()
	b := &testBroker{t: t, clock: &clock{t: start}, issuer: &fakeIssuer{}}
	ca, err := devca.New(td, devca.WithNow(time.Now))
	if err != nil {
		t.Fatal(err)
	}
	b.ca = ca
	pol, err := policy.Parse("policy.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := audit.New(audit.Config{Store: store, Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := approval.NewService(approval.ServiceConfig{Store: store, BreakGlass: store, Policy: func() *approval.Policy { return pol }, Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := revoke.New(revoke.Config{Issuers: map[approval.CredentialKind]revoke.Issuer{approval.KindJWT: b.issuer}, Queue: store.Revocations(), Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Config{
		Policy: pol, Issuers: map[approval.CredentialKind]broker.Issuer{approval.KindJWT: b.issuer}, Ledger: ledger,
		Approvals: svc, Revoker: rev, Commit: store, People: tokenPeople{}, Now: b.clock.Now, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	src := memSource{SVID: b.svid(brokerID), Bundle: ca.Bundle()}
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod == "/writ.broker.v1.BrokerService/IssueCredential" {
			b.issues.Add(1)
		}
		return h(ctx, req)
	}
	countWatch := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod == "/writ.broker.v1.BrokerService/WatchRequest" {
			b.watches.Add(1)
		}
		return h(srv, ss)
	}
	// serve starts the workload listener on addr ("" for a fresh port).
	serve := func(addr string) *grpc.Server {
		gs := grpc.NewServer(grpc.Creds(spiffe.ServerCredentials(src, tlsconfig.AuthorizeMemberOf(td))),
			grpc.ChainUnaryInterceptor(count, srv.UnaryInterceptor()), grpc.ChainStreamInterceptor(countWatch, srv.StreamInterceptor()))
		srv.Register(gs)
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		b.addr = lis.Addr().String()
		go func() { _ = gs.Serve(lis) }()
		return gs
	}
	gs := serve("")
	b.bounce = func() {
		gs.Stop()
		gs = serve(b.addr)
	}
	as := grpc.NewServer(grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(src))),
		grpc.ChainUnaryInterceptor(srv.PersonUnaryInterceptor()), grpc.ChainStreamInterceptor(srv.PersonStreamInterceptor()))
	srv.RegisterAdmin(as)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.adminAddr = lis.Addr().String()
	go func() { _ = as.Serve(lis) }()
	var once sync.Once
	b.stop = func() {
		once.Do(func() {
			gs.Stop()
			as.Stop()
			if _, err := audit.Verify(context.Background(), store); err != nil {
				t.Errorf("ledger does not verify: %v", err)
			}
			_ = store.Close()
		})
	}
	t.Cleanup(b.stop)
	return b
}

func (b *testBroker) svid(id spiffeid.ID) *x509svid.SVID {
	b.t.Helper()
	s, err := b.ca.Issue(id, devca.IssueOptions{})
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

// client returns a Client authenticated as id, on the broker's clock unless
// cfg sets Now. cfg's other zero fields get the package defaults.
func (b *testBroker) client(id spiffeid.ID, cfg client.Config) *client.Client {
	b.t.Helper()
	cfg.BrokerAddr, cfg.BrokerID = b.addr, brokerID
	cfg.Source = memSource{SVID: b.svid(id), Bundle: b.ca.Bundle()}
	if cfg.Now == nil {
		cfg.Now = b.clock.Now
	}
	c, err := client.New(context.Background(), cfg)
	if err != nil {
		b.t.Fatalf("client.New() err = %v", err)
	}
	b.t.Cleanup(func() {
		if err := c.Close(); err != nil {
			b.t.Errorf("Close() err = %v", err)
		}
	})
	return c
}

// approve approves request id as person who.
func (b *testBroker) approve(who, id string) error {
	b.t.Helper()
	cc, err := grpc.NewClient(b.adminAddr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(b.ca.Bundle(), tlsconfig.AuthorizeID(brokerID)))),
		grpc.WithPerRPCCredentials(bearerToken(who)))
	if err != nil {
		return err
	}
	defer cc.Close()
	_, err = adminv1.NewAdminServiceClient(cc).ApproveRequest(context.Background(), &adminv1.ApproveRequestRequest{Id: id, Comment: "ok"})
	return err
}

type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerToken) RequireTransportSecurity() bool { return true }
