package broker_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"pgregory.net/rapid"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/store/boltstore"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

const modelPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: m-auto
    owner: team
    purpose: model test
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {vault_token: {role: orders}}
    approval: {mode: auto}
  - name: m-appr
    owner: team
    purpose: model test
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {vault_token: {role: orders}}
    approval: {mode: approvers, stages: [{groups: [dba], min: 2}], window: 1h}
    break_glass:
      allowed: [spiffe://example.org/ns/orders/*]
      max_ttl: 5m
      review_within: 24h
      reviewers: {groups: [security], min: 1}
`

// fakeVault is an external credential store that outlives broker restarts:
// what it minted stays live until revoked, and it can find what it minted
// for a grant (an OrphanFinder, like Vault's token issuer).
type fakeVault struct {
	mu   sync.Mutex
	n    int
	live map[string]string // ref → grant ID
}

func (v *fakeVault) Issue(_ context.Context, g approval.Grant) (approval.Credential, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.n++
	ref := fmt.Sprintf("acc-%d", v.n)
	v.live[ref] = g.ID
	return approval.Credential{Ref: approval.CredentialRef{Kind: approval.KindVaultToken, ID: ref, Expires: g.Expires},
		Secret: approval.Secret("token-" + ref), IssuedAt: g.IssuedAt}, nil
}

func (v *fakeVault) Revoke(_ context.Context, ref approval.CredentialRef) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.live, ref.ID)
	return nil
}

func (v *fakeVault) FindOrphans(_ context.Context, intents []approval.Intent, _ func(string) bool) (map[string][]approval.CredentialRef, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string][]approval.CredentialRef{}
	for _, in := range intents {
		for ref, g := range v.live {
			if g == in.GrantID {
				out[g] = append(out[g], approval.CredentialRef{Kind: approval.KindVaultToken, ID: ref, Expires: in.NotAfter})
			}
		}
	}
	return out, nil
}

func (v *fakeVault) liveRefs() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for ref := range v.live {
		out = append(out, ref)
	}
	return out
}

// model is the system under test (a real broker on a real bbolt file, an
// injected clock, a fake Vault) and what the test knows about it.
type model struct {
	path  string
	pol   *approval.Policy
	clock *clock
	vault *fakeVault

	store *boltstore.Store
	srv   *broker.Server

	requests  []string                  // request IDs, in creation order
	states    map[string]approval.State // last state seen, per request
	delivered map[string]string         // grant ID → credential ref, every credential a caller received
	bgIDs     []string
}

var modelPeople = []broker.Person{
	people["alice"], people["bob"], people["carol"], people["dave"], people["eve"],
}

func newModel(t *rapid.T, dir string) *model {
	pol, err := policy.Parse("policy.yaml", []byte(modelPolicy))
	if err != nil {
		t.Fatal(err)
	}
	m := &model{path: filepath.Join(dir, "writ.db"), pol: pol, clock: &clock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)},
		vault: &fakeVault{live: map[string]string{}}, states: map[string]approval.State{}, delivered: map[string]string{}}
	m.open(t)
	return m
}

// open starts a broker on the data file and runs the start-up reconciler.
func (m *model) open(t *rapid.T) {
	store, err := boltstore.Open(m.path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := audit.New(audit.Config{Store: store, Now: m.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := approval.NewService(approval.ServiceConfig{Store: store, BreakGlass: store, Policy: func() *approval.Policy { return m.pol }, Now: m.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rv, err := revoke.New(revoke.Config{Issuers: map[approval.CredentialKind]revoke.Issuer{approval.KindVaultToken: m.vault},
		Queue: store.Revocations(), Now: m.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	m.srv, err = broker.New(broker.Config{Policy: m.pol, Issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: m.vault},
		Ledger: ledger, Approvals: svc, Revoker: rv, Commit: store, Grants: store, Intents: store, Now: m.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	m.store = store
	if _, err := m.srv.ReconcileIntents(context.Background()); err != nil {
		t.Fatalf("reconcile at start: %v", err)
	}
}

func (m *model) close(t *rapid.T) {
	if err := m.store.Close(); err != nil {
		t.Fatal(err)
	}
}

func (m *model) workload() context.Context {
	return broker.AsWorkload(context.Background(), orderAPI)
}

func (m *model) pickRequest(t *rapid.T) (string, bool) {
	if len(m.requests) == 0 {
		return "", false
	}
	return rapid.SampledFrom(m.requests).Draw(t, "request"), true
}

func (m *model) submit(t *rapid.T) {
	resp, err := m.srv.RequestAccess(m.workload(), &brokerv1.RequestAccessRequest{Entitlement: "m-appr", Duration: durationpb.New(30 * time.Minute), Reason: "model"})
	if err != nil {
		t.Skipf("request refused: %v", err) // e.g. a pending request exists
	}
	m.requests = append(m.requests, resp.GetRequest().GetId())
}

func (m *model) review(t *rapid.T) {
	id, ok := m.pickRequest(t)
	if !ok {
		t.Skip("no request")
	}
	p := rapid.SampledFrom(modelPeople).Draw(t, "reviewer")
	ctx := broker.AsPerson(context.Background(), p)
	if rapid.Bool().Draw(t, "approve") {
		_, _ = m.srv.ApproveRequest(ctx, &adminv1.ApproveRequestRequest{Id: id, Comment: "ok"})
	} else {
		_, _ = m.srv.DenyRequest(ctx, &adminv1.DenyRequestRequest{Id: id, Comment: "no"})
	}
}

func (m *model) revoke(t *rapid.T) {
	id, ok := m.pickRequest(t)
	if !ok {
		t.Skip("no request")
	}
	_, _ = m.srv.RevokeRequest(broker.AsPerson(context.Background(), people["carol"]), &adminv1.RevokeRequestRequest{Id: id, Reason: "model"})
}

func (m *model) expire(t *rapid.T) {
	m.clock.Advance(time.Duration(rapid.IntRange(0, 90).Draw(t, "minutes")) * time.Minute)
	m.srv.ExpireOnce(context.Background())
}

func (m *model) grant(t *rapid.T) {
	ent := rapid.SampledFrom([]string{"m-auto", "m-appr"}).Draw(t, "entitlement")
	resp, err := m.srv.IssueCredential(m.workload(), &brokerv1.IssueCredentialRequest{Entitlement: ent})
	if err != nil {
		return
	}
	m.deliver(t, resp.GetCredential())
}

// deliver checks that the ledger recorded a credential before the caller
// got it ("audit precedes delivery") and remembers it.
func (m *model) deliver(t *rapid.T, c *brokerv1.Credential) {
	e, ok, err := m.store.GrantEntry(context.Background(), c.GetGrantId())
	if err != nil || !ok || e.CredentialRef != c.GetReference() {
		t.Fatalf("credential %s delivered without its ledger record (%+v, %v, %v)", c.GetGrantId(), e, ok, err)
	}
	m.delivered[c.GetGrantId()] = c.GetReference()
}

func (m *model) breakGlass(t *rapid.T) {
	resp, err := m.srv.BreakGlass(m.workload(), &brokerv1.BreakGlassRequest{Entitlement: "m-appr", Reason: "incident", Incident: "INC-1",
		Ttl: durationpb.New(time.Duration(rapid.IntRange(1, 5).Draw(t, "bg_minutes")) * time.Minute)})
	if err != nil {
		return
	}
	m.deliver(t, resp.GetCredential())
	m.bgIDs = append(m.bgIDs, resp.GetReviewId())
}

func (m *model) reviewBreakGlass(t *rapid.T) {
	if len(m.bgIDs) == 0 {
		t.Skip("no break-glass")
	}
	id := rapid.SampledFrom(m.bgIDs).Draw(t, "break_glass")
	outcome := rapid.SampledFrom([]string{"justified", "unjustified"}).Draw(t, "outcome")
	p := rapid.SampledFrom(modelPeople).Draw(t, "bg_reviewer")
	_, _ = m.srv.ReviewBreakGlass(broker.AsPerson(context.Background(), p), &adminv1.ReviewBreakGlassRequest{Id: id, Outcome: outcome, Notes: "model"})
}

// crash stops a grant right after the (fake) Vault minted, as kill -9
// would, closes the store abruptly and starts a new broker on it; its
// start-up reconciler must revoke the orphan.
func (m *model) crash(t *rapid.T) {
	ent := rapid.SampledFrom([]string{"m-auto", "m-appr"}).Draw(t, "entitlement")
	var crashed string
	broker.SetCrashAfterMint(m.srv, func(g approval.Grant) bool { crashed = g.ID; return true })
	if _, err := m.srv.IssueCredential(m.workload(), &brokerv1.IssueCredentialRequest{Entitlement: ent}); err == nil {
		t.Fatal("a grant went through the crash hook")
	}
	m.close(t)
	m.open(t)
	if crashed != "" {
		for _, ref := range m.vault.liveRefs() {
			if m.vault.live[ref] == crashed {
				t.Fatalf("orphan %s of grant %s is live after the restart's reconciler", ref, crashed)
			}
		}
	}
}

func (m *model) restart(t *rapid.T) {
	m.close(t)
	m.open(t)
}

// allowed are the state transitions a request may make between two looks.
var allowed = map[approval.State][]approval.State{
	approval.StatePending:  {approval.StatePending, approval.StateApproved, approval.StateDenied, approval.StateExpired, approval.StateCancelled},
	approval.StateApproved: {approval.StateApproved, approval.StateRevoked, approval.StateExpired},
}

// check verifies T38's invariants after every step.
func (m *model) check(t *rapid.T) {
	ctx := context.Background()
	if _, err := audit.Verify(ctx, m.store); err != nil {
		t.Fatalf("ledger does not verify: %v", err)
	}
	var entries []audit.Entry
	if err := m.store.ScanRecords(ctx, func(_ uint64, raw []byte) error {
		e, err := audit.Decode(raw)
		entries = append(entries, e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	reqs, err := m.store.ListRequests(ctx, approval.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]approval.Request{}
	for _, r := range reqs {
		byID[r.ID] = r
		// Resolved states are immutable; approved never becomes denied.
		if prev, ok := m.states[r.ID]; ok && prev != r.State {
			if !slices.Contains(allowed[prev], r.State) {
				t.Fatalf("request %s went from %s to %s", r.ID, prev, r.State)
			}
		}
		m.states[r.ID] = r.State
	}
	recorded := map[string]bool{}
	approvedAt := map[string]uint64{}
	for _, e := range entries {
		if e.CredentialRef != "" {
			recorded[e.CredentialRef] = true
		}
		rid := e.Details["request_id"]
		switch {
		case e.Action == broker.ActionApprove:
			approvedAt[rid] = e.Seq
		case e.Action == broker.ActionGrant && e.Outcome == "granted" && e.Entitlement == "m-appr":
			// No credential without an approval on record, live when granted.
			r, ok := byID[rid]
			if !ok || rid == "" {
				t.Fatalf("ledger %d: %s granted without an approval (request %q)", e.Seq, e.Entitlement, rid)
			}
			if s, ok := approvedAt[rid]; !ok || s > e.Seq {
				t.Fatalf("ledger %d: grant under %s before its approve record", e.Seq, rid)
			}
			if r.ApprovedAt.IsZero() || e.Time.Before(r.ApprovedAt) || (!r.ResolvedAt.IsZero() && r.State != approval.StateApproved && r.ResolvedAt.Before(e.Time)) {
				t.Fatalf("ledger %d: grant at %s under %s (%s, approved %s, resolved %s)", e.Seq, e.Time, rid, r.State, r.ApprovedAt, r.ResolvedAt)
			}
		case e.Action == broker.ActionGrant && e.Outcome == "granted" && e.Entitlement != "m-auto":
			t.Fatalf("ledger %d: grant of %s", e.Seq, e.Entitlement)
		}
	}
	// Every delivered credential is in the ledger, crashes included.
	for gid, ref := range m.delivered {
		if e, ok, err := m.store.GrantEntry(ctx, gid); err != nil || !ok || e.CredentialRef != ref {
			t.Fatalf("delivered credential %s (%s) has no ledger record: %+v %v %v", gid, ref, e, ok, err)
		}
	}
	// No live credential at Vault without a record; none under a revoked
	// or expired approval unless its revocation is queued.
	queued := map[string]bool{}
	items, err := m.store.Revocations().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		queued[it.Ref.ID] = true
	}
	for _, ref := range m.vault.liveRefs() {
		if !recorded[ref] {
			t.Fatalf("credential %s is live at Vault but not in the ledger", ref)
		}
	}
	live := map[string]bool{}
	for _, ref := range m.vault.liveRefs() {
		live[ref] = true
	}
	for _, r := range reqs {
		if r.State != approval.StateRevoked && r.State != approval.StateExpired {
			continue
		}
		grants, err := m.store.Grants(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range grants {
			if live[g.Ref.ID] && !queued[g.Ref.ID] && g.Ref.Expires.After(m.clock.Now()) {
				t.Fatalf("request %s is %s but credential %s is live and not queued", r.ID, r.State, g.Ref.ID)
			}
		}
	}
}

// T38: a state machine over submit, review (approve/deny), revoke, expire
// (injected clock), grant, break-glass and its review, crash (after Vault
// minted, before the ledger) and restart, on the real bbolt store with the
// real broker. After every step: the ledger verifies; no credential
// without an approval on record (or the auto policy, or break-glass);
// every delivered credential was recorded first; resolved states never
// change; nothing lives at Vault unrecorded; nothing under a revoked or
// expired approval lives unqueued. (Writ has no single-use approvals: an
// approval is a time window, so the "≤1 credential per single-use
// approval" invariant has nothing to check.) It runs 50 sequences by
// default; run it longer with -rapid.checks=N -rapid.steps=M.
func TestModel_Broker(t *testing.T) {
	// Bounded for CI: 50 runs unless -rapid.checks says otherwise.
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		_ = flag.Set("rapid.checks", "50")
	}
	rapid.Check(t, func(rt *rapid.T) {
		dir, err := os.MkdirTemp(modelDir(), "writ-model")
		if err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(dir)
		m := newModel(rt, dir)
		defer func() { _ = m.store.Close() }()
		rt.Repeat(map[string]func(*rapid.T){
			"submit":             m.submit,
			"review":             m.review,
			"revoke":             m.revoke,
			"expire":             m.expire,
			"grant":              m.grant,
			"break_glass":        m.breakGlass,
			"review_break_glass": m.reviewBreakGlass,
			"crash":              m.crash,
			"restart":            m.restart,
			"":                   m.check,
		})
	})
}

// modelDir is where model runs keep their data file: a tmpfs when there is
// one (fsync costs nothing there, so many more steps fit in CI's budget;
// the crash harness covers real disks), else the default temp dir.
func modelDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", "writ-probe"); err == nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return ""
}
