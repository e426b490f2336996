package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fixture is a Service over a memStore with a settable clock starting at now.
type fixture struct {
	svc   *Service
	store *memStore
	clock *testClock
	pol   *Policy
}

func newFixture(t *testing.T, stages ...Stage) *fixture {
	t.Helper()
	f := &fixture{store: newMemStore(), clock: &testClock{t: now}, pol: approverPolicy(stages...)}
	f.pol.Entitlements["auto"] = testPolicy(ModeAuto, nil).Entitlements["db"]
	f.pol.Entitlements["auto"].Name = "auto"
	var n atomic.Int64
	svc, err := NewService(ServiceConfig{
		Store:  f.store,
		Policy: func() *Policy { return f.pol },
		Now:    f.clock.Now,
		NewID:  func() string { return fmt.Sprintf("r%d", n.Add(1)) },
	})
	if err != nil {
		t.Fatalf("NewService() err = %v", err)
	}
	f.svc = svc
	return f
}

// submit makes rita's 2h request for workload.
func (f *fixture) submit(t *testing.T) Request {
	t.Helper()
	r, err := f.svc.Submit(context.Background(), RequestInput{Requester: rita, Beneficiary: workload, Entitlement: "db", Duration: 2 * time.Hour, Reason: "schema migration"})
	if err != nil {
		t.Fatalf("Submit() err = %v", err)
	}
	return r
}

// stored returns the request as the store holds it, bypassing Service.
func (f *fixture) stored(t *testing.T, id string) Request {
	t.Helper()
	r, err := f.store.GetRequest(context.Background(), id)
	if err != nil {
		t.Fatalf("GetRequest(%s) err = %v", id, err)
	}
	return r
}

func TestNewService_RequiresStoreAndPolicy(t *testing.T) {
	t.Parallel()
	pol := func() *Policy { return nil }
	for _, cfg := range []ServiceConfig{{}, {Store: newMemStore()}, {Policy: pol}} {
		if _, err := NewService(cfg); err == nil {
			t.Errorf("NewService(%+v) err = nil, want an error", cfg)
		}
	}
	svc, err := NewService(ServiceConfig{Store: newMemStore(), Policy: pol})
	if err != nil {
		t.Fatalf("NewService() err = %v", err)
	}
	if id := svc.newID(); !strings.HasPrefix(id, "r_") || id == svc.newID() {
		t.Errorf("default NewID() = %q, want distinct r_ ids", id)
	}
}

func TestService_Submit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, oneDBA...)
	r := f.submit(t)
	if r.ID != "r1" || r.State != StatePending || r.Beneficiary != workload {
		t.Errorf("Submit() = %+v, want pending r1 for %s", r, workload)
	}
	if got := f.stored(t, r.ID); got.State != StatePending {
		t.Errorf("stored state = %s, want pending", got.State)
	}
	tests := []struct {
		name    string
		in      RequestInput
		wantErr error
	}{
		{name: "taken id", in: RequestInput{ID: "r1", Requester: workload, Entitlement: "db", Duration: time.Hour}, wantErr: ErrConflict},
		{name: "auto entitlement", in: RequestInput{Requester: workload, Entitlement: "auto", Duration: time.Hour}, wantErr: ErrInvalid},
		{name: "unknown entitlement", in: RequestInput{Requester: workload, Entitlement: "nope", Duration: time.Hour}, wantErr: ErrUnknownEntitlement},
		{name: "duration above the window", in: RequestInput{Requester: workload, Entitlement: "db", Duration: 9 * time.Hour}, wantErr: ErrTTLTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.svc.Submit(ctx, tt.in); !errors.Is(err, tt.wantErr) {
				t.Errorf("Submit() err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// step is one review in a TestService_Review scenario and what it yields.
type step struct {
	rev       Review
	wantErr   error
	wantState State
}

func TestService_Review(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		stages []Stage
		steps  []step
	}{
		{name: "2-of-N: first approval pends, second approves, third is too late", stages: twoDBAs, steps: []step{
			{rev: approve(alice, "dba"), wantState: StatePending},
			{rev: approve(bob, "dba"), wantState: StateApproved},
			{rev: approve(carol, "dba"), wantErr: ErrResolved, wantState: StateApproved},
		}},
		{name: "two stages both required; one person cannot satisfy both", stages: dbaThenSec, steps: []step{
			{rev: approve(alice, "dba", "security"), wantState: StatePending},
			{rev: approve(alice, "dba", "security"), wantErr: ErrAlreadyReviewed, wantState: StatePending},
			{rev: approve(bob, "dba"), wantErr: ErrNotApprover, wantState: StatePending},
			{rev: approve(carol, "security"), wantState: StateApproved},
		}},
		// T19.
		{name: "requester approving own request", stages: oneDBA, steps: []step{
			{rev: approve(rita, "dba"), wantErr: ErrSelfApproval, wantState: StatePending},
		}},
		// T20.
		{name: "same approver twice", stages: twoDBAs, steps: []step{
			{rev: approve(alice, "dba"), wantState: StatePending},
			{rev: approve(alice, "dba"), wantErr: ErrAlreadyReviewed, wantState: StatePending},
		}},
		{name: "approver not in the group", stages: oneDBA, steps: []step{
			{rev: approve(alice, "sre"), wantErr: ErrNotApprover, wantState: StatePending},
		}},
		{name: "deny resolves at once and for good", stages: twoDBAs, steps: []step{
			{rev: approve(alice, "dba"), wantState: StatePending},
			{rev: deny(bob, "dba"), wantState: StateDenied},
			{rev: approve(carol, "dba"), wantErr: ErrResolved, wantState: StateDenied},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.stages...)
			r := f.submit(t)
			for i, s := range tt.steps {
				f.clock.Set(now.Add(time.Duration(i+1) * time.Minute))
				_, err := f.svc.Review(context.Background(), r.ID, s.rev)
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d: Review(%s) err = %v, want %v", i, s.rev.Reviewer, err, s.wantErr)
				}
				if got := f.stored(t, r.ID); got.State != s.wantState {
					t.Fatalf("step %d: state = %s, want %s", i, got.State, s.wantState)
				}
			}
		})
	}
}

// TestService_Review_Races covers T17 (two approvals of a 1-of-N request at
// once) and T18 (an approval and a denial at once): exactly one review wins,
// the other is told the request is already resolved, and the resolved state
// never flips afterwards.
func TestService_Review_Races(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		first  Review
		second Review
	}{
		{name: "T17 two approvals of a 1-of-N request", first: approve(alice, "dba"), second: approve(bob, "dba")},
		{name: "T18 approve and deny race", first: approve(alice, "dba"), second: deny(bob, "dba")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t, oneDBA...)
			wins := map[Principal]int{}
			for i := range 200 {
				r := f.submit(t)
				revs := []Review{tt.first, tt.second}
				errs := make([]error, len(revs))
				var wg sync.WaitGroup
				start := make(chan struct{})
				for j, rev := range revs {
					wg.Go(func() {
						<-start
						_, errs[j] = f.svc.Review(ctx, r.ID, rev)
					})
				}
				close(start)
				wg.Wait()

				var winner *Review
				for j, err := range errs {
					switch {
					case err == nil && winner == nil:
						winner = &revs[j]
					case err == nil:
						t.Fatalf("run %d: both reviews won", i)
					case !errors.Is(err, ErrResolved):
						t.Fatalf("run %d: losing review err = %v, want ErrResolved", i, err)
					}
				}
				if winner == nil {
					t.Fatalf("run %d: no review won: %v", i, errs)
				}
				wins[winner.Reviewer]++
				want := StateApproved
				if winner.Decision == DecisionDeny {
					want = StateDenied
				}
				got := f.stored(t, r.ID)
				if got.State != want || len(got.Reviews) != 1 || got.Reviews[0].Reviewer != winner.Reviewer {
					t.Fatalf("run %d: stored %s with reviews %+v; want %s by %s only", i, got.State, got.Reviews, want, winner.Reviewer)
				}
				// The resolved state is immutable: later reviews of either kind fail.
				for _, late := range []Review{approve(carol, "dba"), deny(dave, "dba")} {
					if _, err := f.svc.Review(ctx, r.ID, late); !errors.Is(err, ErrResolved) {
						t.Fatalf("run %d: late review err = %v, want ErrResolved", i, err)
					}
				}
				if again := f.stored(t, r.ID); again.State != want || again.Version != got.Version {
					t.Fatalf("run %d: state flipped to %s (version %d → %d)", i, again.State, got.Version, again.Version)
				}
			}
			t.Logf("winners over 200 runs: %v; compare-and-swap retries: %d", wins, f.store.conflicts.Load())
		})
	}
}

func TestService_Review_StoresExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oneDBA...)
	r := f.submit(t)
	f.clock.Set(r.PendingUntil.Add(time.Minute))
	got, err := f.svc.Review(context.Background(), r.ID, approve(alice, "dba"))
	if !errors.Is(err, ErrResolved) {
		t.Fatalf("Review() err = %v, want ErrResolved", err)
	}
	if got.State != StateExpired {
		t.Errorf("Review() returned state %s, want the stored expiry", got.State)
	}
	if s := f.stored(t, r.ID); s.State != StateExpired || !s.ResolvedAt.Equal(r.PendingUntil) || len(s.Reviews) != 0 {
		t.Errorf("stored %+v, want expired at %v without reviews", s, r.PendingUntil)
	}
	if _, err := f.svc.Review(context.Background(), "nope", approve(alice, "dba")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Review(unknown id) err = %v, want ErrNotFound", err)
	}
}

func TestService_Cancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, oneDBA...)
	r := f.submit(t)
	if _, err := f.svc.Cancel(ctx, r.ID, alice, ""); !errors.Is(err, ErrNotRequester) {
		t.Errorf("Cancel(by alice) err = %v, want ErrNotRequester", err)
	}
	got, err := f.svc.Cancel(ctx, r.ID, rita, "wrong entitlement")
	if err != nil || got.State != StateCancelled || got.ResolvedBy != rita {
		t.Fatalf("Cancel(by rita) = %+v, %v; want cancelled by rita", got, err)
	}
	if _, err := f.svc.Review(ctx, r.ID, approve(alice, "dba")); !errors.Is(err, ErrResolved) {
		t.Errorf("Review(cancelled) err = %v, want ErrResolved", err)
	}
}

// approved submits rita's 2h request and has alice approve it at now+1h:
// its window runs from now+1h to now+3h.
func (f *fixture) approved(t *testing.T) Request {
	t.Helper()
	r := f.submit(t)
	f.clock.Set(now.Add(time.Hour))
	r, err := f.svc.Review(context.Background(), r.ID, approve(alice, "dba"))
	if err != nil || r.State != StateApproved {
		t.Fatalf("Review() = %s, %v; want approved", r.State, err)
	}
	return r
}

func TestService_Authorize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("credential before any request", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, oneDBA...)
		_, err := f.svc.Authorize(ctx, workload, "db", 0, "g1")
		if !errors.Is(err, ErrNotApproved) || !strings.Contains(err.Error(), "request access first") {
			t.Errorf("Authorize() err = %v, want ErrNotApproved saying to request access first", err)
		}
	})
	t.Run("credential before approval names the pending request", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, twoDBAs...)
		r := f.submit(t)
		if _, err := f.svc.Review(ctx, r.ID, approve(alice, "dba")); err != nil {
			t.Fatal(err)
		}
		_, err := f.svc.Authorize(ctx, workload, "db", 0, "g1")
		if !errors.Is(err, ErrNotApproved) || !strings.Contains(err.Error(), r.ID) {
			t.Errorf("Authorize() err = %v, want ErrNotApproved naming %s", err, r.ID)
		}
	})
	t.Run("after approval the ttl stays within the window left", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, oneDBA...)
		r := f.approved(t)
		for _, at := range []time.Time{now.Add(time.Hour), r.WindowEnd.Add(-10 * time.Minute), r.WindowEnd.Add(-time.Millisecond)} {
			f.clock.Set(at)
			g, err := f.svc.Authorize(ctx, workload, "db", 0, "g1")
			if err != nil {
				t.Fatalf("Authorize() at %v err = %v", at, err)
			}
			if g.RequestID != r.ID || g.Expires.After(r.WindowEnd) || g.TTL > min(15*time.Minute, r.WindowEnd.Sub(at)) {
				t.Errorf("Authorize() at %v = %+v; want under %s, ending by %v", at, g, r.ID, r.WindowEnd)
			}
		}
		f.clock.Set(r.WindowEnd.Add(-5 * time.Minute))
		if _, err := f.svc.Authorize(ctx, workload, "db", 10*time.Minute, "g1"); !errors.Is(err, ErrTTLTooLong) {
			t.Errorf("Authorize(10m with 5m left) err = %v, want ErrTTLTooLong", err)
		}
	})
	t.Run("after the window", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, oneDBA...)
		r := f.approved(t)
		f.clock.Set(r.WindowEnd.Add(time.Millisecond))
		if _, err := f.svc.Authorize(ctx, workload, "db", 0, "g1"); !errors.Is(err, ErrWindowEnded) {
			t.Errorf("Authorize() err = %v, want ErrWindowEnded", err)
		}
		if _, err := f.svc.ExpireDue(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Authorize(ctx, workload, "db", 0, "g1"); !errors.Is(err, ErrWindowEnded) {
			t.Errorf("Authorize() after the sweep err = %v, want ErrWindowEnded", err)
		}
	})
	t.Run("the approval ending last is used", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, oneDBA...)
		first := f.approved(t) // window to now+3h
		f.clock.Set(now.Add(2 * time.Hour))
		second := f.submit(t)
		second, err := f.svc.Review(ctx, second.ID, approve(bob, "dba")) // window to now+4h
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Set(first.WindowEnd.Add(-time.Minute))
		g, err := f.svc.Authorize(ctx, workload, "db", 0, "g1")
		if err != nil || g.RequestID != second.ID || g.TTL != 15*time.Minute {
			t.Errorf("Authorize() = %+v, %v; want a 15m grant under %s", g, err, second.ID)
		}
	})
	t.Run("another beneficiary's approval does not count", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, oneDBA...)
		f.approved(t)
		if _, err := f.svc.Authorize(ctx, "spiffe://td/ns/prod/other", "db", 0, "g1"); !errors.Is(err, ErrNotApproved) {
			t.Errorf("Authorize(other workload) err = %v, want ErrNotApproved", err)
		}
		if _, err := f.svc.Authorize(ctx, "spiffe://td/ns/dev/api", "db", 0, "g1"); !errors.Is(err, ErrNotEligible) {
			t.Errorf("Authorize(ineligible workload) err = %v, want ErrNotEligible", err)
		}
	})
	t.Run("a revoked approval grants nothing", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, oneDBA...)
		r := f.approved(t)
		if _, err := f.svc.Revoke(ctx, r.ID, carol, "done"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Authorize(ctx, workload, "db", 0, "g1"); !errors.Is(err, ErrNotApproved) {
			t.Errorf("Authorize() err = %v, want ErrNotApproved", err)
		}
	})
	t.Run("an auto entitlement is decided by policy", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, oneDBA...)
		g, err := f.svc.Authorize(ctx, workload, "auto", 0, "g1")
		if err != nil || g.TTL != 15*time.Minute || g.RequestID != "" {
			t.Errorf("Authorize(auto) = %+v, %v; want a 15m grant without a request", g, err)
		}
	})
}

// TestService_RevokeRecordsGrants covers causal revocation and T23: a grant
// recorded under an approval is returned by Revoke, and a grant recorded
// after the revocation is refused so its minter revokes it.
func TestService_RevokeRecordsGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, oneDBA...)
	r := f.approved(t)
	g, err := f.svc.Authorize(ctx, workload, "db", 0, "g1")
	if err != nil {
		t.Fatal(err)
	}
	rec := GrantRecord{GrantID: g.ID, RequestID: g.RequestID, Ref: CredentialRef{Kind: KindJWT, ID: "jti-1", Expires: g.Expires}, IssuedAt: g.IssuedAt}
	if err := f.svc.RecordGrant(ctx, rec); err != nil {
		t.Fatalf("RecordGrant() err = %v", err)
	}
	if err := f.svc.RecordGrant(ctx, GrantRecord{GrantID: "g0"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("RecordGrant(no request) err = %v, want ErrInvalid", err)
	}
	rv, err := f.svc.Revoke(ctx, r.ID, carol, "incident over")
	if err != nil || rv.Request.State != StateRevoked || rv.Again || len(rv.Grants) != 1 || rv.Grants[0].GrantID != "g1" {
		t.Fatalf("Revoke() = %s (again %v), %v, %v; want revoked with grant g1", rv.Request.State, rv.Again, rv.Grants, err)
	}
	late := GrantRecord{GrantID: "g2", RequestID: r.ID, Ref: CredentialRef{Kind: KindJWT, ID: "jti-2"}}
	if err := f.svc.RecordGrant(ctx, late); !errors.Is(err, ErrResolved) {
		t.Errorf("RecordGrant(after revoke) err = %v, want ErrResolved", err)
	}
	// Revoking again changes nothing and lists every grant, so what is
	// still live can be revoked again (T41).
	again, err := f.svc.Revoke(ctx, r.ID, alice, "again")
	if err != nil || !again.Again || again.Request.ResolvedBy != carol || len(again.Grants) != 2 {
		t.Errorf("second Revoke() = again %v, resolved by %s, %d grants, %v; want again, carol's revocation kept, both grants", again.Again, again.Request.ResolvedBy, len(again.Grants), err)
	}
	if _, err := f.svc.Revoke(ctx, r.ID, "", "again"); !errors.Is(err, ErrInvalid) {
		t.Errorf("second Revoke() without a revoker err = %v, want ErrInvalid", err)
	}
	if all, err := f.svc.Grants(ctx, r.ID); err != nil || len(all) != 2 {
		t.Errorf("Grants() = %v, %v; want both records", all, err)
	}
}

func TestService_GetAndList_ShowExpiryWithoutStoringIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, oneDBA...)
	stale := f.submit(t)
	f.clock.Set(now.Add(12 * time.Hour))
	fresh := f.submit(t)
	f.clock.Set(stale.PendingUntil)

	got, err := f.svc.Get(ctx, stale.ID)
	if err != nil || got.State != StateExpired {
		t.Errorf("Get() = %s, %v; want expired", got.State, err)
	}
	if s := f.stored(t, stale.ID); s.State != StatePending {
		t.Errorf("Get() stored state %s; want no write", s.State)
	}
	if _, err := f.svc.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) err = %v, want ErrNotFound", err)
	}
	pending, err := f.svc.List(ctx, Filter{States: []State{StatePending}})
	if err != nil || len(pending) != 1 || pending[0].ID != fresh.ID {
		t.Errorf("List(pending) = %v, %v; want only %s", pending, err, fresh.ID)
	}
	all, err := f.svc.List(ctx, Filter{})
	if err != nil || len(all) != 2 || all[1].State != StateExpired {
		t.Errorf("List() = %v, %v; want both, the older expired", all, err)
	}
}

// TestService_ExpireDue checks that concurrent sweeps (two brokers) expire
// every due request exactly once between them, and leave the rest alone.
func TestService_ExpireDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, oneDBA...)
	approvedReq := f.approved(t) // window ends at now+3h
	pendingReq := f.submit(t)    // pending until now+25h
	f.clock.Set(now.Add(20 * time.Hour))
	laterReq := f.submit(t) // pending until now+44h
	f.clock.Set(now.Add(30 * time.Hour))

	results := make([][]Request, 2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			var err error
			results[i], err = f.svc.ExpireDue(ctx)
			if err != nil {
				t.Errorf("ExpireDue() err = %v", err)
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for _, rs := range results {
		for _, r := range rs {
			seen[r.ID]++
			if r.State != StateExpired {
				t.Errorf("ExpireDue() reported %s as %s", r.ID, r.State)
			}
		}
	}
	if len(seen) != 2 || seen[approvedReq.ID] != 1 || seen[pendingReq.ID] != 1 {
		t.Errorf("ExpireDue() reported %v; want %s and %s once each", seen, approvedReq.ID, pendingReq.ID)
	}
	if s := f.stored(t, approvedReq.ID); s.State != StateExpired || !s.ResolvedAt.Equal(approvedReq.WindowEnd) {
		t.Errorf("approval stored as %s at %v; want expired at its window end %v", s.State, s.ResolvedAt, approvedReq.WindowEnd)
	}
	if s := f.stored(t, laterReq.ID); s.State != StatePending {
		t.Errorf("request not yet due stored as %s; want pending", s.State)
	}
	if again, err := f.svc.ExpireDue(ctx); err != nil || len(again) != 0 {
		t.Errorf("second ExpireDue() = %v, %v; want nothing", again, err)
	}
}

// TestService_In: a Service bound to a transaction reads and writes only
// through it (here a second in-memory store stands in for one), so that
// its decisions commit with the caller's other writes.
func TestService_In(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, oneDBA...)
	tx := newMemStore()
	in := f.svc.In(tx)
	r, err := in.Submit(ctx, RequestInput{Requester: rita, Beneficiary: workload, Entitlement: "db", Duration: time.Hour, Reason: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.GetRequest(ctx, r.ID); err != nil {
		t.Errorf("request not written through the transaction: %v", err)
	}
	if _, err := f.store.GetRequest(ctx, r.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("request written outside the transaction: %v", err)
	}
	if _, err := f.svc.Get(ctx, r.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the unbound Service sees %s, want ErrNotFound", r.ID)
	}
}
