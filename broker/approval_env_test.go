package broker_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/notify"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/txn"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

const approvalPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: db-admin
    owner: dba-team
    purpose: test
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {jwt: {audience: [db]}}
    approval: {mode: approvers, stages: [{groups: [dba], min: 2}], window: 1h}
  - name: one-dba
    owner: dba-team
    purpose: test
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {jwt: {audience: [db]}}
    approval: {mode: approvers, stages: [{groups: [dba], min: 1}], window: 1h}
  - name: two-stage
    owner: dba-team
    purpose: test
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {jwt: {audience: [db]}}
    approval: {mode: approvers, stages: [{groups: [dba], min: 1}, {groups: [security], min: 1}], window: 1h}
  - name: vault-admin
    owner: dba-team
    purpose: test
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {vault_token: {role: orders}}
    approval: {mode: approvers, stages: [{groups: [dba], min: 1}], window: 1h}
  - name: bg-db
    owner: dba-team
    purpose: test
    max_ttl: 1h
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {jwt: {audience: [db]}}
    approval: {mode: approvers, stages: [{groups: [dba], min: 2}], window: 1h}
    break_glass:
      allowed: [spiffe://example.org/ns/orders/*, sre]
      max_ttl: 5m
      review_within: 24h
      reviewers: {groups: [security], min: 1}
  - name: bg-vault
    owner: dba-team
    purpose: test
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {vault_token: {role: orders}}
    approval: {mode: approvers, stages: [{groups: [dba], min: 1}], window: 1h}
    break_glass:
      allowed: [spiffe://example.org/ns/orders/*]
      max_ttl: 5m
      review_within: 1h
      reviewers: {groups: [security], min: 1}
`

// People the tests sign in as: the token is the name.
var people = map[string]broker.Person{
	"alice":   {Principal: "oidc:https://idp.test#alice", Groups: []string{"dba"}},
	"bob":     {Principal: "oidc:https://idp.test#bob", Groups: []string{"dba"}},
	"carol":   {Principal: "oidc:https://idp.test#carol", Groups: []string{"dba"}},
	"dave":    {Principal: "oidc:https://idp.test#dave", Groups: []string{"security"}},
	"eve":     {Principal: "oidc:https://idp.test#eve", Groups: []string{"sales"}},
	"mallory": {Principal: "oidc:https://idp.test#mallory", Groups: []string{"dba"}},
	"sam":     {Principal: "oidc:https://idp.test#sam", Groups: []string{"sre", "security"}},
}

// tokenPeople is a PersonVerifier for tests; OIDC itself is tested in
// internal/oidc and end to end in cmd/writd.
type tokenPeople struct{}

func (tokenPeople) VerifyPerson(_ context.Context, token string) (broker.Person, error) {
	if p, ok := people[token]; ok {
		return p, nil
	}
	return broker.Person{}, errors.New("unknown token")
}

// clock is a settable clock shared by every component of a test broker.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// recordingNotifier collects notifications.
type recordingNotifier struct {
	mu     sync.Mutex
	events []notify.Event
}

func (r *recordingNotifier) Notify(_ context.Context, e notify.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recordingNotifier) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Kind)
	}
	return out
}

// apprEnv is a broker with approvals: workload listener (mTLS), admin
// listener (TLS + bearer token), bbolt store and ledger, revoker.
type apprEnv struct {
	t         *testing.T
	ca        *devca.CA
	path      string
	store     *boltstore.Store
	srv       *broker.Server
	revoker   *revoke.Revoker
	clock     *clock
	notifier  *recordingNotifier
	addr      string
	adminAddr string
	stop      func()

	wrapCommit func(txn.Committer) txn.Committer
}

// commit returns the Committer the broker uses: the store, wrapped if the
// test asked for it.
func (e *apprEnv) commit(store *boltstore.Store) txn.Committer {
	if e.wrapCommit != nil {
		return e.wrapCommit(store)
	}
	return store
}

type apprOptions struct {
	issuers  map[approval.CredentialKind]broker.Issuer // replace the fakes by kind
	path     string                                    // reuse a data file (restart)
	notifier broker.Notifier                           // nil: record notifications
	policy   string                                    // "": approvalPolicy
	metrics  *broker.Metrics
	ca       *devca.CA
	clock    *clock
	// wrapCommit, if set, wraps the store's Committer (to inject failures).
	wrapCommit func(txn.Committer) txn.Committer
}

func newApprEnv(t *testing.T, o apprOptions) *apprEnv {
	t.Helper()
	e := &apprEnv{t: t, ca: o.ca, clock: o.clock, path: o.path, notifier: &recordingNotifier{}, wrapCommit: o.wrapCommit}
	if e.clock == nil {
		e.clock = &clock{t: time.Now().UTC().Truncate(time.Second)}
	}
	if e.ca == nil {
		ca, err := devca.New(td, devca.WithNow(time.Now))
		if err != nil {
			t.Fatal(err)
		}
		e.ca = ca
	}
	if e.path == "" {
		e.path = filepath.Join(t.TempDir(), "writ.db")
	}
	polText := approvalPolicy
	if o.policy != "" {
		polText = o.policy
	}
	pol, err := policy.Parse("policy.yaml", []byte(polText))
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(e.path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.store = store
	ledger, err := audit.New(audit.Config{Store: store, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	issuers := map[approval.CredentialKind]broker.Issuer{
		approval.KindJWT:             &denyListIssuer{store: store, now: e.clock.Now},
		approval.KindVaultToken:      &fakeIssuer{},
		approval.KindVaultSecret:     &fakeIssuer{},
		approval.KindVaultTransitJWT: &fakeIssuer{},
	}
	for k, v := range o.issuers {
		issuers[k] = v
	}
	svc, err := approval.NewService(approval.ServiceConfig{Store: store, BreakGlass: store, Policy: func() *approval.Policy { return pol }, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	revokers := map[approval.CredentialKind]revoke.Issuer{}
	for k, v := range issuers {
		revokers[k] = v
	}
	e.revoker, err = revoke.New(revoke.Config{Issuers: revokers, Queue: store.Revocations(), Now: e.clock.Now,
		BaseBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, AttemptTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var notifier broker.Notifier = e.notifier
	if o.notifier != nil {
		notifier = o.notifier
	}
	e.srv, err = broker.New(broker.Config{
		Policy: pol, Issuers: issuers, Ledger: ledger, Approvals: svc, Revoker: e.revoker, Commit: e.commit(store),
		DenyListKinds: []approval.CredentialKind{approval.KindJWT},
		People:        tokenPeople{}, Notifier: notifier, Now: e.clock.Now, Metrics: o.metrics, Grants: store,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	src := memSource{SVID: mustSVID(t, e.ca, brokerID), Bundle: e.ca.Bundle()}
	gs := grpc.NewServer(grpc.Creds(spiffe.ServerCredentials(src, tlsconfig.AuthorizeMemberOf(td))),
		grpc.ChainUnaryInterceptor(e.srv.UnaryInterceptor()), grpc.ChainStreamInterceptor(e.srv.StreamInterceptor()))
	e.srv.Register(gs)
	as := grpc.NewServer(grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(src))),
		grpc.ChainUnaryInterceptor(e.srv.PersonUnaryInterceptor()), grpc.ChainStreamInterceptor(e.srv.PersonStreamInterceptor()))
	e.srv.RegisterAdmin(as)
	for srv, addr := range map[*grpc.Server]*string{gs: &e.addr, as: &e.adminAddr} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		*addr = lis.Addr().String()
		go func() { _ = srv.Serve(lis) }()
	}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			gs.Stop()
			as.Stop()
			if _, err := audit.Verify(context.Background(), store); err != nil {
				t.Errorf("ledger does not verify: %v", err)
			}
			_ = store.Close()
		})
	}
	t.Cleanup(e.stop)
	return e
}

func mustSVID(t *testing.T, ca *devca.CA, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	svid, err := ca.Issue(id, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svid
}

// workload returns a workload API client authenticated as id.
func (e *apprEnv) workload(id spiffeid.ID) brokerv1.BrokerServiceClient {
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(spiffe.ClientCredentials(
		memSource{SVID: mustSVID(e.t, e.ca, id), Bundle: e.ca.Bundle()}, tlsconfig.AuthorizeID(brokerID))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cc.Close() })
	return brokerv1.NewBrokerServiceClient(cc)
}

// person returns an admin API client signed in with token ("" for none).
func (e *apprEnv) person(token string) adminv1.AdminServiceClient {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(e.ca.Bundle(), tlsconfig.AuthorizeID(brokerID))))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(token)))
	}
	cc, err := grpc.NewClient(e.adminAddr, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cc.Close() })
	return adminv1.NewAdminServiceClient(cc)
}

type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerToken) RequireTransportSecurity() bool { return true }

// actions returns the ledger's actions in order, with outcomes.
func (e *apprEnv) actions() []string {
	e.t.Helper()
	var out []string
	err := e.store.ScanRecords(context.Background(), func(_ uint64, raw []byte) error {
		en, err := audit.Decode(raw)
		out = append(out, en.Action+":"+en.Outcome)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// denyListIssuer is a JWT issuer stand-in whose Revoke uses the real bbolt
// deny-list, like jwtissuer does.
type denyListIssuer struct {
	fakeIssuer
	store *boltstore.Store
	now   func() time.Time
}

func (d *denyListIssuer) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	return d.fakeIssuer.Issue(ctx, g)
}

func (d *denyListIssuer) Revoke(ctx context.Context, ref approval.CredentialRef) error {
	return d.store.DenyJTI(ctx, ref.ID, ref.Expires)
}

func (e *apprEnv) denied() map[string]bool {
	e.t.Helper()
	list, err := e.store.DeniedJTIs(context.Background(), e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, d := range list {
		out[d.JTI] = true
	}
	return out
}
