package broker_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/testenv"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

const testPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: orders
    owner: team-orders
    purpose: test
    max_ttl: 15m
    requesters: [spiffe://example.org/ns/orders/*, spiffe://example.org/reporter]
    issuer: {jwt: {audience: [orders-api]}}
    approval: {mode: auto}
  - name: short
    owner: team-orders
    purpose: test
    max_ttl: 1h
    requesters: [spiffe://example.org/reporter]
    issuer: {jwt: {audience: [orders-api]}}
    approval: {mode: auto, condition: 'request.ttl <= duration("5m")'}
`

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	brokerID = spiffeid.RequireFromPath(td, "/writd")
	reporter = spiffeid.RequireFromPath(td, "/reporter")
	orderAPI = spiffeid.RequireFromPath(td, "/ns/orders/api")
	stranger = spiffeid.RequireFromPath(td, "/ns/other/api")
	operator = spiffeid.RequireFromPath(td, "/ops/admin")
	fixedNow = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
)

// memSource serves one SVID and bundle.
type memSource struct {
	*x509svid.SVID
	*x509bundle.Bundle
}

func (memSource) Close() error { return nil }

// fakeIssuer mints fake secrets and remembers revocations.
type fakeIssuer struct {
	mu      sync.Mutex
	fail    error
	issued  []approval.Credential
	revoked []approval.CredentialRef
}

func (f *fakeIssuer) Issue(_ context.Context, g approval.Grant) (approval.Credential, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return approval.Credential{}, f.fail
	}
	c := approval.Credential{
		Ref:      approval.CredentialRef{Kind: g.Recipe.Kind, ID: "ref-" + g.ID, Expires: g.Expires},
		Secret:   approval.Secret("s3cret-" + g.ID),
		IssuedAt: g.IssuedAt,
	}
	f.issued = append(f.issued, c)
	return c, nil
}

func (f *fakeIssuer) Revoke(_ context.Context, ref approval.CredentialRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, ref)
	return nil
}

// failingLedger fails every append: the injected ledger failure.
type failingLedger struct{}

func (failingLedger) Append(context.Context, audit.Event) (audit.Entry, error) {
	return audit.Entry{}, errors.New("injected: disk full")
}

type env struct {
	ca        *devca.CA
	addr      string
	adminAddr string
	store     *boltstore.Store
	issuer    *fakeIssuer
	logs      *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type envOptions struct {
	ledger  broker.Ledger                             // nil: the real bbolt ledger
	policy  string                                    // "": testPolicy
	issuers map[approval.CredentialKind]broker.Issuer // nil: the fake JWT issuer
	now     func() time.Time                          // nil: fixedNow
	limits  broker.Limits
	// limitNow is the rate limiters' clock (nil: time.Now).
	limitNow func() time.Time
	// people verifies ID tokens on an admin listener (nil: none started).
	people broker.PersonVerifier
	// intercept, if set, runs before the broker's interceptors on the
	// workload listener.
	intercept grpc.UnaryServerInterceptor
	metrics   *broker.Metrics // nil: none
}

// newEnv starts a broker on loopback with real mTLS, a real bbolt ledger in
// t.TempDir() and a fake issuer.
func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	ca, err := devca.New(td, devca.WithNow(time.Now))
	if err != nil {
		t.Fatal(err)
	}
	polText := testPolicy
	if opts.policy != "" {
		polText = opts.policy
	}
	pol, err := policy.Parse("policy.yaml", []byte(polText))
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Invariant on cleanup: whatever the test did, the chain verifies.
		if _, err := audit.Verify(context.Background(), store); err != nil {
			t.Errorf("ledger does not verify after the test: %v", err)
		}
		_ = store.Close()
	})
	ledger := opts.ledger
	if ledger == nil {
		l, err := audit.New(audit.Config{Store: store, Now: func() time.Time { return fixedNow }})
		if err != nil {
			t.Fatal(err)
		}
		ledger = l
	}
	e := &env{ca: ca, store: store, issuer: &fakeIssuer{}, logs: &syncBuffer{}}
	issuers := opts.issuers
	if issuers == nil {
		issuers = map[approval.CredentialKind]broker.Issuer{approval.KindJWT: e.issuer}
	}
	now := opts.now
	if now == nil {
		now = func() time.Time { return fixedNow }
	}
	srv, err := broker.New(broker.Config{
		Policy:    pol,
		Issuers:   issuers,
		Ledger:    ledger,
		Operators: []spiffeid.ID{operator},
		Logger:    slog.New(slog.NewJSONHandler(e.logs, nil)),
		Now:       now,
		Limits:    opts.limits,
		LimitNow:  opts.limitNow,
		People:    opts.people,
		Metrics:   opts.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	unary := []grpc.UnaryServerInterceptor{srv.UnaryInterceptor()}
	if opts.intercept != nil {
		unary = append([]grpc.UnaryServerInterceptor{opts.intercept}, unary...)
	}
	gs := grpc.NewServer(append(opts.limits.ServerOptions(),
		grpc.Creds(spiffe.ServerCredentials(e.source(t, brokerID), tlsconfig.AuthorizeMemberOf(td))),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(srv.StreamInterceptor()),
	)...)
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	e.addr = lis.Addr().String()
	if opts.people != nil {
		as := grpc.NewServer(append(opts.limits.ServerOptions(),
			grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(e.source(t, brokerID)))),
			grpc.ChainUnaryInterceptor(srv.PersonUnaryInterceptor()),
			grpc.ChainStreamInterceptor(srv.PersonStreamInterceptor()),
		)...)
		srv.RegisterAdmin(as)
		alis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = as.Serve(alis) }()
		t.Cleanup(as.Stop)
		e.adminAddr = alis.Addr().String()
	}
	return e
}

func (e *env) source(t *testing.T, id spiffeid.ID) spiffe.Source {
	t.Helper()
	svid, err := e.ca.Issue(id, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return memSource{SVID: svid, Bundle: e.ca.Bundle()}
}

func (e *env) conn(t *testing.T, id spiffeid.ID) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(spiffe.ClientCredentials(e.source(t, id), tlsconfig.AuthorizeID(brokerID))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func (e *env) client(t *testing.T, id spiffeid.ID) brokerv1.BrokerServiceClient {
	return brokerv1.NewBrokerServiceClient(e.conn(t, id))
}

// entries returns every ledger entry.
func (e *env) entries(t *testing.T) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	err := e.store.ScanRecords(context.Background(), func(_ uint64, raw []byte) error {
		en, err := audit.Decode(raw)
		out = append(out, en)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestServer_IssueCredential(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		caller      spiffeid.ID
		entitlement string
		ttl         time.Duration
		wantCode    codes.Code
		wantMsg     string // part of the status message
		wantAction  string // ledger record written
		wantOutcome string
		wantTTL     time.Duration
	}{
		{name: "eligible by prefix gets max_ttl by default", caller: orderAPI, entitlement: "orders", wantCode: codes.OK, wantAction: "grant", wantOutcome: "granted", wantTTL: 15 * time.Minute},
		{name: "eligible by exact ID with a shorter ttl", caller: reporter, entitlement: "orders", ttl: 2 * time.Minute, wantCode: codes.OK, wantAction: "grant", wantOutcome: "granted", wantTTL: 2 * time.Minute},
		{name: "T27 not eligible is denied and recorded", caller: stranger, entitlement: "orders", wantCode: codes.PermissionDenied, wantMsg: "spiffe://example.org/ns/other/api", wantAction: "deny", wantOutcome: "not_eligible"},
		{name: "unknown entitlement", caller: reporter, entitlement: "nope", wantCode: codes.NotFound, wantMsg: "nope", wantAction: "deny", wantOutcome: "unknown_entitlement"},
		{name: "ttl above max is refused naming the limit", caller: reporter, entitlement: "orders", ttl: 16 * time.Minute, wantCode: codes.InvalidArgument, wantMsg: "15m0s", wantAction: "deny", wantOutcome: "ttl_too_long"},
		{name: "condition false is denied", caller: reporter, entitlement: "short", ttl: 10 * time.Minute, wantCode: codes.PermissionDenied, wantMsg: "condition", wantAction: "deny", wantOutcome: "condition_false"},
		{name: "condition true is granted", caller: reporter, entitlement: "short", ttl: 5 * time.Minute, wantCode: codes.OK, wantAction: "grant", wantOutcome: "granted", wantTTL: 5 * time.Minute},
		{name: "malformed entitlement name", caller: reporter, entitlement: "../etc", wantCode: codes.InvalidArgument, wantMsg: "not a valid name", wantAction: "deny", wantOutcome: "invalid_request"},
		{name: "negative ttl", caller: reporter, entitlement: "orders", ttl: -time.Second, wantCode: codes.InvalidArgument, wantAction: "deny", wantOutcome: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			req := &brokerv1.IssueCredentialRequest{Entitlement: tt.entitlement}
			if tt.ttl != 0 {
				req.Ttl = durationpb.New(tt.ttl)
			}
			resp, err := e.client(t, tt.caller).IssueCredential(context.Background(), req)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("IssueCredential() code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantMsg != "" && !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
				t.Errorf("IssueCredential() message = %q, want it to mention %q", status.Convert(err).Message(), tt.wantMsg)
			}
			entries := e.entries(t)
			if len(entries) != 1 {
				t.Fatalf("ledger has %d records, want 1: %+v", len(entries), entries)
			}
			got := entries[0]
			if got.Action != tt.wantAction || got.Outcome != tt.wantOutcome || got.Subject != tt.caller.String() || got.Actor != tt.caller.String() {
				t.Errorf("ledger record = {action %q outcome %q subject %q actor %q}, want {%q %q %q}", got.Action, got.Outcome, got.Subject, got.Actor, tt.wantAction, tt.wantOutcome, tt.caller)
			}
			if tt.wantCode != codes.OK {
				if got.CredentialRef != "" || len(e.issuer.issued) != 0 {
					t.Errorf("denied request minted a credential: ref %q, issued %d", got.CredentialRef, len(e.issuer.issued))
				}
				return
			}
			c := resp.GetCredential()
			if c.GetExpiresAt().AsTime().Sub(fixedNow) != tt.wantTTL || got.TTL != tt.wantTTL {
				t.Errorf("credential expires %v after issue, ledger ttl %v; want %v", c.GetExpiresAt().AsTime().Sub(fixedNow), got.TTL, tt.wantTTL)
			}
			if got.GrantID != c.GetGrantId() || got.CredentialRef != c.GetReference() || got.Rule == "" {
				t.Errorf("ledger record %+v does not match credential %v or lacks the rule", got, c)
			}
			if c.GetKind() != brokerv1.CredentialKind_CREDENTIAL_KIND_JWT || !strings.HasPrefix(c.GetSecret(), "s3cret-") {
				t.Errorf("credential = %v, want the issuer's jwt", c)
			}
		})
	}
}

// T35: secrets appear neither in the ledger file nor in the logs.
func TestServer_SecretsNeverStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	resp, err := e.client(t, reporter).IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	secret := resp.GetCredential().GetSecret()
	for _, en := range e.entries(t) {
		b, _ := audit.Encode(en)
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("ledger record %d contains the secret", en.Seq)
		}
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Errorf("logs contain the secret:\n%s", e.logs.String())
	}
	if !strings.Contains(e.logs.String(), resp.GetCredential().GetReference()) {
		t.Errorf("logs do not name the credential reference; want it for operators")
	}
}

// A ledger that cannot record the grant: the minted credential is revoked
// and the caller gets UNAVAILABLE.
func TestServer_LedgerFailureRevokes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ledger: failingLedger{}})
	_, err := e.client(t, reporter).IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("IssueCredential() = %v, want Unavailable", err)
	}
	if len(e.issuer.issued) != 1 || len(e.issuer.revoked) != 1 || e.issuer.revoked[0] != e.issuer.issued[0].Ref {
		t.Fatalf("issued %v, revoked %v; want the one issued credential revoked", e.issuer.issued, e.issuer.revoked)
	}
}

// An issuer failure: UNAVAILABLE, and the ledger says nothing was issued.
func TestServer_IssuerFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.issuer.fail = fmt.Errorf("vault: connection refused")
	_, err := e.client(t, reporter).IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("IssueCredential() = %v, want Unavailable", err)
	}
	if strings.Contains(status.Convert(err).Message(), "connection refused") {
		t.Errorf("status leaks the internal error: %v", err)
	}
	entries := e.entries(t)
	if len(entries) != 1 || entries[0].Action != "grant_failed" || entries[0].CredentialRef != "" {
		t.Errorf("ledger = %+v, want one grant_failed record without a credential", entries)
	}
}

// The acceptance case: 100 concurrent grants, 100 records, no gaps, chain verifies.
func TestServer_ConcurrentGrants(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, orderAPI)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("IssueCredential: %v", err)
		}
	}
	sum, err := audit.Verify(context.Background(), e.store)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != n {
		t.Fatalf("ledger has %d records, want %d", sum.Records, n)
	}
	seen := map[string]bool{}
	for i, en := range e.entries(t) {
		if en.Seq != uint64(i+1) || en.Action != "grant" || seen[en.GrantID] {
			t.Fatalf("record %d = seq %d action %q grant %q; want seq %d, a grant, unique ids", i, en.Seq, en.Action, en.GrantID, i+1)
		}
		seen[en.GrantID] = true
	}
}

// T30: a TLS client without a certificate, or a plaintext client, never
// reaches a handler: nothing is recorded.
func TestServer_RejectsUnauthenticatedTransport(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	bundle := e.ca.Bundle()
	noCert := credentials.NewTLS(&tls.Config{RootCAs: poolOf(bundle), ServerName: "ignored", InsecureSkipVerify: true}) //nolint:gosec // the client under test must fail on its own missing cert
	for name, creds := range map[string]credentials.TransportCredentials{"tls without client cert": noCert, "plaintext": insecure.NewCredentials()} {
		cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = brokerv1.NewBrokerServiceClient(cc).IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
		cancel()
		_ = cc.Close()
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("%s: IssueCredential() = %v, want a transport failure", name, err)
		}
	}
	if n := len(e.entries(t)); n != 0 || len(e.issuer.issued) != 0 {
		t.Errorf("a handler ran: %d ledger records, %d credentials", n, len(e.issuer.issued))
	}
}

func TestServer_ListEntitlements(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	resp, err := adminv1.NewAdminServiceClient(e.conn(t, operator)).ListEntitlements(context.Background(), &adminv1.ListEntitlementsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(resp.GetEntitlements()); got != 2 || resp.GetEntitlements()[1].GetCondition() == "" {
		t.Errorf("ListEntitlements() = %v, want both entitlements with the condition", resp)
	}
	_, err = adminv1.NewAdminServiceClient(e.conn(t, reporter)).ListEntitlements(context.Background(), &adminv1.ListEntitlementsRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("ListEntitlements() by a workload = %v, want PermissionDenied", err)
	}
}

func TestNew_RequiresIssuerForEveryKind(t *testing.T) {
	pol, err := policy.Parse("policy.yaml", []byte(strings.ReplaceAll(testPolicy, "{jwt: {audience: [orders-api]}}", "{vault_token: {role: orders}}")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = broker.New(broker.Config{Policy: pol, Ledger: failingLedger{}, Issuers: map[approval.CredentialKind]broker.Issuer{approval.KindJWT: &fakeIssuer{}}})
	if err == nil || !strings.Contains(err.Error(), "vault_token") {
		t.Errorf("New() = %v, want an error naming the unconfigured vault_token issuer", err)
	}
}

func poolOf(b *x509bundle.Bundle) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range b.X509Authorities() {
		p.AddCert(c)
	}
	return p
}

// slowLedger holds every append until release is closed, like an audit
// volume slower than any caller's deadline.
type slowLedger struct {
	broker.Ledger
	release chan struct{}
}

func (s slowLedger) Append(ctx context.Context, e audit.Event) (audit.Entry, error) {
	<-s.release
	return s.Ledger.Append(ctx, e)
}

// T6: the ledger is slower than the caller's deadline. The caller gets
// DEADLINE_EXCEEDED; the credential minted meanwhile is still recorded,
// then revoked and recorded as revoked: nothing is issued unrecorded, and
// nothing undelivered stays live.
func TestServer_SlowLedgerPastDeadline(t *testing.T) {
	t.Parallel()
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	real, err := audit.New(audit.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	e := newEnv(t, envOptions{ledger: slowLedger{Ledger: real, release: release}})
	// The deadline is gRPC's, on the real clock (no clock to inject into
	// gRPC); the ledger is held until the caller has seen it pass.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = e.client(t, reporter).IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
	close(release)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("IssueCredential() = %v, want DeadlineExceeded", err)
	}
	// The handler finishes on its own goroutine: poll for its records.
	var actions []string
	testenv.Eventually(t, 10*time.Second, "the grant and its revocation in the ledger", func() bool {
		actions = actions[:0]
		_ = store.ScanRecords(context.Background(), func(_ uint64, raw []byte) error {
			en, err := audit.Decode(raw)
			actions = append(actions, en.Action+":"+en.Outcome)
			return err
		})
		return len(actions) >= 2
	})
	if strings.Join(actions, ",") != "grant:granted,revoke:revoked" {
		t.Fatalf("ledger = %v, want the grant recorded and then its revocation", actions)
	}
	e.issuer.mu.Lock()
	defer e.issuer.mu.Unlock()
	if len(e.issuer.issued) != 1 || len(e.issuer.revoked) != 1 || e.issuer.revoked[0] != e.issuer.issued[0].Ref {
		t.Errorf("issued %v, revoked %v; want the undelivered credential revoked", e.issuer.issued, e.issuer.revoked)
	}
}
