package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/txn"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// errInjected is the failure the fault committer injects.
var errInjected = errors.New("injected: disk full")

// fault is what faultCommitter does to the next transactions.
type fault int32

const (
	faultNone   fault = iota
	faultAppend       // every ledger append in the transaction fails
	faultCommit       // everything is written, then the transaction fails at the last moment
)

// faultCommitter wraps the store's Committer and injects failures.
type faultCommitter struct {
	txn.Committer
	mode atomic.Int32
}

func (f *faultCommitter) set(m fault) { f.mode.Store(int32(m)) }

func (f *faultCommitter) Commit(ctx context.Context, fn func(txn.Tx) error) error {
	mode := fault(f.mode.Load())
	return f.Committer.Commit(ctx, func(tx txn.Tx) error {
		if mode == faultAppend {
			tx = failingAppendTx{tx}
		}
		if err := fn(tx); err != nil {
			return err
		}
		if mode == faultCommit {
			return errInjected // after every put, before the commit
		}
		return nil
	})
}

// failingAppendTx is a transaction whose ledger appends fail.
type failingAppendTx struct{ txn.Tx }

func (failingAppendTx) AppendEntry(audit.Build) (audit.Entry, error) {
	return audit.Entry{}, errInjected
}

// storeState is everything a decision may change, read from the store.
type storeState struct {
	Ledger     []string
	Requests   []approval.Request
	BreakGlass []approval.BreakGlass
	Queue      []revoke.Item
	Denied     []boltstore.DeniedJTI
}

func readState(t *testing.T, s *boltstore.Store, now time.Time) storeState {
	t.Helper()
	ctx := context.Background()
	var st storeState
	err := s.ScanRecords(ctx, func(_ uint64, raw []byte) error {
		st.Ledger = append(st.Ledger, string(raw))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests, err = s.ListRequests(ctx, approval.Filter{}); err != nil {
		t.Fatal(err)
	}
	if st.BreakGlass, err = s.ListBreakGlass(ctx, approval.BreakGlassFilter{}); err != nil {
		t.Fatal(err)
	}
	if st.Queue, err = s.Revocations().List(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Denied, err = s.DeniedJTIs(ctx, now); err != nil {
		t.Fatal(err)
	}
	return st
}

// decisionCase is one decision path: setup brings the broker to the state
// before the decision, do makes it.
type decisionCase struct {
	name  string
	setup func(t *testing.T, e *apprEnv) (do func() error)
	// want is the code of do without a fault (OK: success, or a
	// background job that returns nothing).
	want codes.Code
	// mintsFirst: the path mints a credential before deciding, and a
	// failed decision revokes it (one more deny-list entry).
	mintsFirst bool
}

func decisionCases() []decisionCase {
	ctx := context.Background()
	approved := func(t *testing.T, e *apprEnv, ent string, creds int) *brokerv1.AccessRequest {
		w := e.workload(orderAPI)
		r := requestAccess(t, w, ent, time.Hour)
		if _, err := approve(e, "alice", r.GetId()); err != nil {
			t.Fatal(err)
		}
		for range creds {
			if _, err := issue(w, ent, 0); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	takeBG := func(t *testing.T, e *apprEnv) string {
		taken, err := e.person("sam").TakeBreakGlass(ctx, &adminv1.TakeBreakGlassRequest{
			Entitlement: "bg-db", Beneficiary: orderAPI.String(), Reason: "db down", Incident: "INC-9"})
		if err != nil {
			t.Fatal(err)
		}
		return taken.GetRecord().GetId()
	}
	reviewBG := func(e *apprEnv, who, id, outcome string) func() error {
		return func() error {
			_, err := e.person(who).ReviewBreakGlass(ctx, &adminv1.ReviewBreakGlassRequest{Id: id, Outcome: outcome, Notes: "checked"})
			return err
		}
	}
	return []decisionCase{
		{name: "request", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			w := e.workload(orderAPI)
			return func() error {
				_, err := w.RequestAccess(ctx, &brokerv1.RequestAccessRequest{Entitlement: "one-dba", Duration: durationpb.New(time.Hour), Reason: "x"})
				return err
			}
		}},
		{name: "first of two approvals", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			r := requestAccess(t, e.workload(orderAPI), "db-admin", time.Hour)
			return func() error { _, err := approve(e, "alice", r.GetId()); return err }
		}},
		{name: "approval", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			r := requestAccess(t, e.workload(orderAPI), "one-dba", time.Hour)
			return func() error { _, err := approve(e, "alice", r.GetId()); return err }
		}},
		{name: "second approval", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			r := requestAccess(t, e.workload(orderAPI), "db-admin", time.Hour)
			if _, err := approve(e, "alice", r.GetId()); err != nil {
				t.Fatal(err)
			}
			return func() error { _, err := approve(e, "bob", r.GetId()); return err }
		}},
		{name: "denial", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			r := requestAccess(t, e.workload(orderAPI), "one-dba", time.Hour)
			return func() error {
				_, err := e.person("alice").DenyRequest(ctx, &adminv1.DenyRequestRequest{Id: r.GetId(), Comment: "no"})
				return err
			}
		}},
		{name: "refused review", want: codes.PermissionDenied, setup: func(t *testing.T, e *apprEnv) func() error {
			r := requestAccess(t, e.workload(orderAPI), "one-dba", time.Hour)
			return func() error { _, err := approve(e, "eve", r.GetId()); return err }
		}},
		{name: "review of an expired request", want: codes.FailedPrecondition, setup: func(t *testing.T, e *apprEnv) func() error {
			r := requestAccess(t, e.workload(orderAPI), "one-dba", time.Hour)
			e.clock.Advance(25 * time.Hour)
			return func() error { _, err := approve(e, "alice", r.GetId()); return err }
		}},
		{name: "revocation", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			r := approved(t, e, "one-dba", 3)
			return func() error {
				_, err := e.person("alice").RevokeRequest(ctx, &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "leak"})
				return err
			}
		}},
		{name: "revocation again", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			r := approved(t, e, "one-dba", 2)
			revokeIt := func() error {
				_, err := e.person("alice").RevokeRequest(ctx, &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "leak"})
				return err
			}
			if err := revokeIt(); err != nil {
				t.Fatal(err)
			}
			return revokeIt
		}},
		{name: "revocation of an approval past its window", want: codes.FailedPrecondition, setup: func(t *testing.T, e *apprEnv) func() error {
			r := approved(t, e, "one-dba", 2)
			e.clock.Advance(time.Hour)
			return func() error {
				_, err := e.person("alice").RevokeRequest(ctx, &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "late"})
				return err
			}
		}},
		{name: "expiry", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			approved(t, e, "one-dba", 2)
			requestAccess(t, e.workload(orderAPI), "db-admin", time.Hour)
			e.clock.Advance(25 * time.Hour)
			return func() error { e.srv.ExpireOnce(ctx); return nil }
		}},
		{name: "break-glass taken", want: codes.OK, mintsFirst: true, setup: func(t *testing.T, e *apprEnv) func() error {
			w := e.workload(orderAPI)
			return func() error { _, err := breakGlass(w, "bg-db", "db down", 0); return err }
		}},
		{name: "break-glass review closes it", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			return reviewBG(e, "dave", takeBG(t, e), "justified")
		}},
		{name: "break-glass found unjustified", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			return reviewBG(e, "dave", takeBG(t, e), "unjustified")
		}},
		{name: "break-glass refused review", want: codes.PermissionDenied, setup: func(t *testing.T, e *apprEnv) func() error {
			return reviewBG(e, "eve", takeBG(t, e), "justified")
		}},
		{name: "break-glass escalation", want: codes.OK, setup: func(t *testing.T, e *apprEnv) func() error {
			takeBG(t, e)
			e.clock.Advance(25 * time.Hour)
			return func() error { e.srv.EscalateOnce(ctx); return nil }
		}},
	}
}

// TestDecision_LedgerFailureLeavesNoDecision: for each decision path, a
// ledger append that fails inside the decision's transaction leaves no
// decision: UNAVAILABLE, nothing stored, recorded or queued. Without the
// fault the same call changes the store (the path is really exercised).
func TestDecision_LedgerFailureLeavesNoDecision(t *testing.T) {
	t.Parallel()
	for _, tc := range decisionCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fc := &faultCommitter{}
			e := newApprEnv(t, apprOptions{wrapCommit: func(c txn.Committer) txn.Committer { fc.Committer = c; return fc }})
			do := tc.setup(t, e)
			before := readState(t, e.store, e.clock.Now())

			fc.set(faultAppend)
			err := do()
			if tc.want != codes.OK || err != nil { // background jobs return nothing
				if got := status.Code(err); got != codes.Unavailable {
					t.Errorf("with a failing ledger: %v, want Unavailable", err)
				}
			}
			after := readState(t, e.store, e.clock.Now())
			checkUnchanged(t, before, after, tc.mintsFirst)

			fc.set(faultNone)
			if err := do(); status.Code(err) != tc.want {
				t.Fatalf("without the fault: %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(before, readState(t, e.store, e.clock.Now())); diff == "" {
				t.Errorf("without the fault the decision changed nothing; the case does not exercise its path")
			}
		})
	}
}

// TestDecision_FailureAtCommitLeavesNothing (T41 without a real kill): each
// decision path writes everything (request or use, ledger records,
// revocation queue entries) and then its transaction fails at the last
// moment; after the store is closed and reopened, nothing of it is there.
func TestDecision_FailureAtCommitLeavesNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range decisionCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fc := &faultCommitter{}
			e := newApprEnv(t, apprOptions{wrapCommit: func(c txn.Committer) txn.Committer { fc.Committer = c; return fc }})
			do := tc.setup(t, e)
			before := readState(t, e.store, e.clock.Now())
			fc.set(faultCommit)
			err := do()
			if tc.want != codes.OK || err != nil {
				if got := status.Code(err); got != codes.Unavailable {
					t.Errorf("with a failing commit: %v, want Unavailable", err)
				}
			}
			e.stop()
			reopened, err := boltstore.Open(e.path, boltstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer reopened.Close()
			checkUnchanged(t, before, readState(t, reopened, e.clock.Now()), tc.mintsFirst)
		})
	}
}

// checkUnchanged compares the state before and after a failed decision. A
// path that mints first has revoked the credential it minted: one more
// deny-list entry, nothing else.
func checkUnchanged(t *testing.T, before, after storeState, mintsFirst bool) {
	t.Helper()
	if mintsFirst {
		if len(after.Denied) != len(before.Denied)+1 {
			t.Errorf("deny-list has %d entries after the failed decision, want %d: the minted credential must be revoked", len(after.Denied), len(before.Denied)+1)
		}
		after.Denied = before.Denied
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("a failed decision changed the store (-before +after):\n%s", diff)
	}
}

// downIssuer mints Vault-token stand-ins and fails revocations while down.
type downIssuer struct {
	fakeIssuer
	mu      sync.Mutex
	down    bool
	revokes map[string]int
}

func (d *downIssuer) setDown(v bool) { d.mu.Lock(); d.down = v; d.mu.Unlock() }

func (d *downIssuer) Revoke(_ context.Context, ref approval.CredentialRef) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return errors.New("vault unreachable")
	}
	if d.revokes == nil {
		d.revokes = map[string]int{}
	}
	d.revokes[ref.ID]++
	return nil
}

// T41: revoking an already revoked approval re-queues what is still live
// (here: queue entries lost to an operator's mistake) instead of refusing
// as "already resolved", and records that it did.
func TestDecision_RevokeAgainRequeues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	iss := &downIssuer{}
	e := newApprEnv(t, apprOptions{issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: iss}})
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "vault-admin", time.Hour)
	if _, err := approve(e, "alice", r.GetId()); err != nil {
		t.Fatal(err)
	}
	var refs []string
	for range 3 {
		c, err := issue(w, "vault-admin", 0)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, c.GetReference())
	}
	iss.setDown(true)
	resp, err := e.person("alice").RevokeRequest(ctx, &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "leak"})
	if err != nil {
		t.Fatal(err)
	}
	queue := e.store.Revocations()
	if items, err := queue.List(ctx); err != nil || len(items) != 3 || len(resp.GetResults()) != 3 || resp.GetResults()[0].GetOutcome() != "queued" {
		t.Fatalf("after revoking with the issuer down: queue %v (%v), results %v; want 3 queued", items, err, resp.GetResults())
	}
	// The queue loses its entries (restored from an old backup, deleted by
	// hand): the credentials would stay live until they expire.
	items, _ := queue.List(ctx)
	for _, it := range items {
		if err := queue.Done(ctx, it.ID); err != nil {
			t.Fatal(err)
		}
	}
	again, err := e.person("bob").RevokeRequest(ctx, &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "again"})
	if err != nil {
		t.Fatalf("second revocation = %v, want it to re-queue, not refuse", err)
	}
	if got := again.GetRequest().GetState(); got != brokerv1.RequestState_REQUEST_STATE_REVOKED {
		t.Errorf("state after revoking again = %v, want revoked", got)
	}
	if items, err := queue.List(ctx); err != nil || len(items) != 3 {
		t.Errorf("queue after revoking again = %d items (%v), want the 3 credentials back", len(items), err)
	}
	// The second revocation is on record, as a repeat.
	entries := ledgerEntries(t, e.store)
	var repeat *audit.Entry
	for i := range entries {
		if entries[i].Action == broker.ActionRevokeApproval && entries[i].Details["again"] == "true" {
			repeat = &entries[i]
		}
	}
	if repeat == nil || repeat.Actor != string(people["bob"].Principal) || repeat.Details["queued"] != "3" {
		t.Errorf("ledger has no revoke_approval record of the repeat by bob with 3 queued: %+v", repeat)
	}
	// Once the issuer is back, the queue revokes them all.
	iss.setDown(false)
	e.clock.Advance(time.Second)
	if done, failed, err := e.revoker.RunOnce(ctx); err != nil || done != 3 || failed != 0 {
		t.Fatalf("RunOnce = %d done, %d failed, %v; want 3 done", done, failed, err)
	}
	iss.mu.Lock()
	for _, ref := range refs {
		if iss.revokes[ref] == 0 {
			t.Errorf("credential %s never revoked", ref)
		}
	}
	iss.mu.Unlock()
	// Revoking once more, after they expired, is still fine and queues
	// nothing.
	e.clock.Advance(time.Hour)
	if _, err := e.person("alice").RevokeRequest(ctx, &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "third"}); err != nil {
		t.Errorf("third revocation = %v", err)
	}
	if items, err := queue.List(ctx); err != nil || len(items) != 0 {
		t.Errorf("queue after revoking expired credentials = %v, %v; want empty", items, err)
	}
}

// Item 6: every record carries the policy version; the text is recorded
// once per version, at start.
func TestDecision_PolicyVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newApprEnv(t, apprOptions{})
	pol := e.srv.Policy()
	if rec, err := e.srv.RecordPolicy(ctx); err != nil || !rec {
		t.Fatalf("RecordPolicy() on a new ledger = %v, %v; want recorded", rec, err)
	}
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "one-dba", time.Hour)
	if _, err := approve(e, "eve", r.GetId()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("refused review = %v", err)
	}
	if _, err := approve(e, "alice", r.GetId()); err != nil {
		t.Fatal(err)
	}
	if _, err := issue(w, "one-dba", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := issue(w, "no-such-thing", 0); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown entitlement = %v", err)
	}
	if _, err := e.person("alice").RevokeRequest(ctx, &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	entries := ledgerEntries(t, e.store)
	if entries[0].Action != broker.ActionPolicyLoaded || entries[0].Details["text"] != string(pol.Text) || entries[0].Details["previous"] != "" {
		t.Errorf("first record = %s %v, want policy_loaded with the policy text", entries[0].Action, entries[0].Details["previous"])
	}
	var actions []string
	for _, en := range entries {
		actions = append(actions, en.Action)
		if en.Details["policy"] != pol.Hash {
			t.Errorf("record %d (%s) policy = %q, want %s", en.Seq, en.Action, en.Details["policy"], pol.Hash)
		}
	}
	for _, want := range []string{"request", "review_refused", "review", "approve", "grant", "deny", "revoke_approval", "credential_revoked"} {
		if !strings.Contains(","+strings.Join(actions, ",")+",", ","+want+",") {
			t.Errorf("ledger %v has no %s record", actions, want)
		}
	}

	// Restart with the same policy: nothing new. Then with another: a new
	// version, linked to the previous one.
	e.stop()
	same := newApprEnv(t, apprOptions{path: e.path, ca: e.ca, clock: e.clock})
	if rec, err := same.srv.RecordPolicy(ctx); err != nil || rec {
		t.Errorf("RecordPolicy() after a restart with the same policy = %v, %v; want nothing recorded", rec, err)
	}
	n := len(ledgerEntries(t, same.store))
	same.stop()
	changed := approvalPolicy + "  - name: added\n    owner: x\n    purpose: x\n    max_ttl: 1m\n    requesters: [spiffe://example.org/ns/orders/*]\n    issuer: {jwt: {audience: [db]}}\n    approval: {mode: auto}\n"
	next := newApprEnv(t, apprOptions{path: e.path, ca: e.ca, clock: e.clock, policy: changed})
	if rec, err := next.srv.RecordPolicy(ctx); err != nil || !rec {
		t.Fatalf("RecordPolicy() with a changed policy = %v, %v; want recorded", rec, err)
	}
	entries = ledgerEntries(t, next.store)
	last := entries[len(entries)-1]
	newHash := next.srv.Policy().Hash
	if len(entries) != n+1 || last.Action != broker.ActionPolicyLoaded || last.Details["policy"] != newHash ||
		last.Details["previous"] != pol.Hash || last.Details["text"] != changed || newHash == pol.Hash {
		t.Errorf("after a policy change: %d records (want %d), last %s %v", len(entries), n+1, last.Action, fmt.Sprint(last.Details["policy"], " previous ", last.Details["previous"]))
	}
}

// T41: a revocation denies its JWTs in its own transaction, so they are on
// the deny-list the moment it commits, whatever happens to the issuer call
// after it (here the issuer's Revoke does nothing at all).
func TestDecision_RevocationDeniesJWTsInItsTransaction(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{issuers: map[approval.CredentialKind]broker.Issuer{approval.KindJWT: &fakeIssuer{}}})
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "one-dba", time.Hour)
	if _, err := approve(e, "alice", r.GetId()); err != nil {
		t.Fatal(err)
	}
	var jtis []string
	for range 5 {
		c, err := issue(w, "one-dba", 0)
		if err != nil {
			t.Fatal(err)
		}
		jtis = append(jtis, c.GetReference())
	}
	if len(e.denied()) != 0 {
		t.Fatal("deny-list not empty before the revocation")
	}
	if _, err := e.person("alice").RevokeRequest(context.Background(), &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "leak"}); err != nil {
		t.Fatal(err)
	}
	denied := e.denied()
	for _, j := range jtis {
		if !denied[j] {
			t.Errorf("jti %s is not on the deny-list after the revocation committed", j)
		}
	}
}
