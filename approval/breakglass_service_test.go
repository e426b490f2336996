package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// newBreakGlassFixture is newFixture with the memStore as BreakGlassStore
// and the policy of breakGlassPolicy, plus "cache", a copy of "db" whose
// rule does not block while overdue.
func newBreakGlassFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: newMemStore(), clock: &testClock{t: now}, pol: breakGlassPolicy()}
	cache := approverEntitlement(oneDBA...)
	cache.Name = "cache"
	cache.BreakGlass = breakGlassRule()
	cache.BreakGlass.BlockWhileOverdue = false
	f.pol.Entitlements["cache"] = cache
	svc, err := NewService(ServiceConfig{
		Store:      f.store,
		Policy:     func() *Policy { return f.pol },
		Now:        f.clock.Now,
		BreakGlass: f.store,
	})
	if err != nil {
		t.Fatalf("NewService() err = %v", err)
	}
	f.svc = svc
	return f
}

// take has who (in sre) break glass on entitlement for themselves.
func (f *fixture) take(t *testing.T, who Principal, entitlement string) (BreakGlass, error) {
	t.Helper()
	bg, _, err := f.svc.TakeBreakGlass(context.Background(), BreakGlassInput{
		Taker: who, TakerGroups: []string{"sre"}, Entitlement: entitlement, Reason: "orders are failing",
	}, "g-"+string(who))
	return bg, err
}

func TestService_TakeBreakGlass(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBreakGlassFixture(t)
	bg, g, err := f.svc.TakeBreakGlass(ctx, BreakGlassInput{Taker: workload, Entitlement: "db", Reason: "orders are failing"}, "g1")
	if err != nil {
		t.Fatalf("TakeBreakGlass() err = %v", err)
	}
	if !strings.HasPrefix(bg.ID, "bg_") || bg.State != BreakGlassOpen || !g.BreakGlass || g.ID != "g1" || g.TTL != 5*time.Minute {
		t.Errorf("TakeBreakGlass() = %+v, %+v; want an open bg_ use and a 5m break-glass grant g1", bg, g)
	}
	stored, err := f.svc.GetBreakGlass(ctx, bg.ID)
	if err != nil || stored.Taker != workload || !stored.ReviewDue.Equal(now.Add(24*time.Hour)) {
		t.Errorf("GetBreakGlass() = %+v, %v; want the stored use, due in 24h", stored, err)
	}
	if _, _, err := f.svc.TakeBreakGlass(ctx, BreakGlassInput{ID: bg.ID, Taker: workload, Entitlement: "db", Reason: "again"}, "g2"); !errors.Is(err, ErrConflict) {
		t.Errorf("TakeBreakGlass(taken id) err = %v, want ErrConflict", err)
	}
	if _, err := f.svc.GetBreakGlass(ctx, "bg_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBreakGlass(unknown) err = %v, want ErrNotFound", err)
	}
	if _, _, err := f.svc.TakeBreakGlass(ctx, BreakGlassInput{Taker: workload, Entitlement: "auto", Reason: "x"}, "g3"); !errors.Is(err, ErrBreakGlassNotAllowed) {
		t.Errorf("TakeBreakGlass(auto) err = %v, want ErrBreakGlassNotAllowed", err)
	}
}

// TestService_TakeBreakGlass_OverdueBlocks covers the review obligation: an
// overdue review blocks its taker (under any entitlement whose rule says
// so), names itself, and closing it lifts the block; nobody else is blocked.
func TestService_TakeBreakGlass_OverdueBlocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBreakGlassFixture(t)
	first, err := f.take(t, sam, "db")
	if err != nil {
		t.Fatalf("take() err = %v", err)
	}

	f.clock.Set(first.ReviewDue.Add(-time.Second))
	if _, err := f.take(t, sam, "db"); err != nil {
		t.Fatalf("take() before the review is due err = %v, want nil", err)
	}

	f.clock.Set(first.ReviewDue)
	_, err = f.take(t, sam, "db")
	if !errors.Is(err, ErrReviewOverdue) || !strings.Contains(err.Error(), first.ID) || !strings.Contains(err.Error(), first.ReviewDue.Format(time.RFC3339)) {
		t.Fatalf("take() while overdue err = %v, want ErrReviewOverdue naming %s and its due time %s", err, first.ID, first.ReviewDue.Format(time.RFC3339))
	}
	if _, err := f.take(t, sam, "db"); !errors.Is(err, ErrReviewOverdue) {
		t.Errorf("take() again while overdue err = %v, want ErrReviewOverdue", err)
	}
	if _, err := f.take(t, dave, "db"); err != nil {
		t.Errorf("take() by another person err = %v, want nil: only the taker is blocked", err)
	}
	if _, _, err := f.svc.TakeBreakGlass(ctx, BreakGlassInput{Taker: workload, Entitlement: "db", Reason: "x"}, "g-w"); err != nil {
		t.Errorf("TakeBreakGlass(another workload) err = %v, want nil", err)
	}
	if _, err := f.take(t, sam, "cache"); err != nil {
		t.Errorf("take(cache) err = %v, want nil: its rule does not block while overdue", err)
	}

	for _, who := range []Principal{bob, carol} {
		if _, err := f.svc.ReviewBreakGlass(ctx, first.ID, justified(who, "security")); err != nil {
			t.Fatalf("ReviewBreakGlass(%s) err = %v", who, err)
		}
	}
	if _, err := f.take(t, sam, "db"); err != nil {
		t.Errorf("take() after the overdue review closed err = %v, want nil", err)
	}
}

func TestService_ReviewBreakGlass(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBreakGlassFixture(t)
	bg, err := f.take(t, sam, "db")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Set(now.Add(time.Hour))
	if _, err := f.svc.ReviewBreakGlass(ctx, bg.ID, justified(sam, "security")); !errors.Is(err, ErrSelfApproval) {
		t.Errorf("ReviewBreakGlass(by the taker) err = %v, want ErrSelfApproval", err)
	}
	got, err := f.svc.ReviewBreakGlass(ctx, bg.ID, justified(bob, "security"))
	if err != nil || got.State != BreakGlassOpen || len(got.Reviews) != 1 || !got.Reviews[0].At.Equal(now.Add(time.Hour)) {
		t.Fatalf("ReviewBreakGlass(bob) = %+v, %v; want open with bob's review at now+1h", got, err)
	}
	if _, err := f.svc.ReviewBreakGlass(ctx, "bg_nope", justified(bob, "security")); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReviewBreakGlass(unknown) err = %v, want ErrNotFound", err)
	}
	f.pol.Entitlements["db"].BreakGlass.ReviewerGroups = []string{"audit"} // a policy reload
	if _, err := f.svc.ReviewBreakGlass(ctx, bg.ID, justified(carol, "security")); !errors.Is(err, ErrNotApprover) {
		t.Errorf("ReviewBreakGlass(after reviewers changed) err = %v, want ErrNotApprover: the rule in force applies", err)
	}
	got, err = f.svc.ReviewBreakGlass(ctx, bg.ID, unjustified(carol, "audit"))
	if err != nil || got.State != BreakGlassClosed || got.Outcome != OutcomeUnjustified {
		t.Errorf("ReviewBreakGlass(carol, unjustified) = %s %q, %v; want closed unjustified", got.State, got.Outcome, err)
	}
}

func TestService_RecordBreakGlassGrant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBreakGlassFixture(t)
	bg, err := f.take(t, sam, "db")
	if err != nil {
		t.Fatal(err)
	}
	ref := CredentialRef{Kind: KindJWT, ID: "jti-1", Expires: now.Add(5 * time.Minute)}
	if err := f.svc.RecordBreakGlassGrant(ctx, bg.ID, "g1", ref); err != nil {
		t.Fatalf("RecordBreakGlassGrant() err = %v", err)
	}
	if got, _ := f.svc.GetBreakGlass(ctx, bg.ID); got.GrantID != "g1" || got.Credential != ref {
		t.Errorf("stored grant %q %+v, want g1 %+v", got.GrantID, got.Credential, ref)
	}
	tests := []struct {
		name    string
		id      string
		grantID string
		wantErr error
	}{
		{"the same grant again", bg.ID, "g1", nil},
		{"another grant", bg.ID, "g2", ErrConflict},
		{"empty grant id", bg.ID, "", ErrInvalid},
		{"unknown break-glass", "bg_nope", "g1", ErrNotFound},
	}
	for _, tt := range tests {
		if err := f.svc.RecordBreakGlassGrant(ctx, tt.id, tt.grantID, ref); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: RecordBreakGlassGrant() err = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
}

func TestService_ListBreakGlass(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBreakGlassFixture(t)
	var ids []string
	for i, who := range []Principal{sam, dave, sam} {
		f.clock.Set(now.Add(time.Duration(i) * time.Hour))
		bg, err := f.take(t, who, "cache")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, bg.ID)
	}
	if _, err := f.svc.ReviewBreakGlass(ctx, ids[0], unjustified(bob, "security")); err != nil {
		t.Fatal(err)
	}
	f.clock.Set(now.Add(25*time.Hour + 30*time.Minute)) // ids[1] is overdue, ids[2] not yet
	tests := []struct {
		name string
		f    BreakGlassFilter
		want []string
	}{
		{"all, newest first", BreakGlassFilter{}, []string{ids[2], ids[1], ids[0]}},
		{"open", BreakGlassFilter{Open: true}, []string{ids[2], ids[1]}},
		{"overdue", BreakGlassFilter{Overdue: true}, []string{ids[1]}},
		{"taker", BreakGlassFilter{Taker: sam}, []string{ids[2], ids[0]}},
		{"overdue of another taker", BreakGlassFilter{Overdue: true, Taker: sam}, nil},
		{"limit", BreakGlassFilter{Limit: 1}, []string{ids[2]}},
		{"limit applies after overdue", BreakGlassFilter{Overdue: true, Limit: 1}, []string{ids[1]}},
	}
	for _, tt := range tests {
		got, err := f.svc.ListBreakGlass(ctx, tt.f)
		if err != nil {
			t.Fatalf("%s: ListBreakGlass() err = %v", tt.name, err)
		}
		var gotIDs []string
		for _, bg := range got {
			gotIDs = append(gotIDs, bg.ID)
		}
		if strings.Join(gotIDs, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: ListBreakGlass(%+v) = %v, want %v", tt.name, tt.f, gotIDs, tt.want)
		}
	}
}

// TestService_EscalateOverdue checks that two brokers sweeping at once,
// round after round, report each overdue review exactly once, never one
// that is closed or not yet due, and store when it was escalated.
func TestService_EscalateOverdue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBreakGlassFixture(t)
	const rounds = 50
	put := func(id string, taken time.Time, state BreakGlassState) {
		t.Helper()
		bg := BreakGlass{ID: id, Taker: sam, Beneficiary: sam, Entitlement: "db", Reason: "x", TakenAt: taken, ReviewDue: taken.Add(24 * time.Hour), State: state}
		if err := f.store.CreateBreakGlass(ctx, bg); err != nil {
			t.Fatal(err)
		}
	}
	put("bg_closed", now.Add(-48*time.Hour), BreakGlassClosed)
	seen := map[string]int{}
	for round := range rounds {
		// Each round one more review falls due; the next is not due yet.
		taken := now.Add(time.Duration(round) * time.Hour)
		put(fmt.Sprintf("bg_%02d", round), taken, BreakGlassOpen)
		at := taken.Add(24 * time.Hour)
		f.clock.Set(at)

		results := make([][]BreakGlass, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range results {
			wg.Go(func() {
				<-start
				var err error
				results[i], err = f.svc.EscalateOverdue(ctx)
				if err != nil {
					t.Errorf("round %d: EscalateOverdue() err = %v", round, err)
				}
			})
		}
		close(start)
		wg.Wait()
		reported := 0
		for _, bgs := range results {
			for _, bg := range bgs {
				seen[bg.ID]++
				reported++
				if !bg.EscalatedAt.Equal(at) {
					t.Errorf("round %d: %s reported with EscalatedAt %v, want %v", round, bg.ID, bg.EscalatedAt, at)
				}
			}
		}
		if reported != 1 {
			t.Fatalf("round %d: %d reports between two sweeps, want exactly 1: %v", round, reported, results)
		}
	}
	for round := range rounds {
		if id := fmt.Sprintf("bg_%02d", round); seen[id] != 1 {
			t.Errorf("%s reported %d times, want once", id, seen[id])
		}
	}
	if seen["bg_closed"] != 0 {
		t.Errorf("closed review reported %d times, want never", seen["bg_closed"])
	}
	if again, err := f.svc.EscalateOverdue(ctx); err != nil || len(again) != 0 {
		t.Errorf("EscalateOverdue() after all = %v, %v; want nothing", again, err)
	}
	t.Logf("compare-and-swap retries: %d", f.store.conflicts.Load())
}

// TestService_BreakGlassNeverApproves checks that break-glass on an
// entitlement that needs approvers leaves no approval behind: Authorize
// still refuses the workload.
func TestService_BreakGlassNeverApproves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newBreakGlassFixture(t)
	if _, _, err := f.svc.TakeBreakGlass(ctx, BreakGlassInput{Taker: workload, Entitlement: "db", Reason: "orders are failing"}, "g1"); err != nil {
		t.Fatalf("TakeBreakGlass() err = %v", err)
	}
	if _, err := f.take(t, sam, "db"); err != nil {
		t.Fatalf("take() err = %v", err)
	}
	if _, err := f.svc.Authorize(ctx, workload, "db", 0, "g2"); !errors.Is(err, ErrNotApproved) {
		t.Errorf("Authorize() after break-glass err = %v, want ErrNotApproved", err)
	}
	if rs, err := f.svc.List(ctx, Filter{}); err != nil || len(rs) != 0 {
		t.Errorf("List() = %v, %v; want no requests from break-glass", rs, err)
	}
}

func TestService_BreakGlassWithoutStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, oneDBA...) // no BreakGlassStore
	f.pol.Entitlements["db"].BreakGlass = breakGlassRule()
	calls := map[string]func() error{
		"TakeBreakGlass": func() error {
			_, _, err := f.svc.TakeBreakGlass(ctx, BreakGlassInput{Taker: workload, Entitlement: "db", Reason: "x"}, "g1")
			return err
		},
		"RecordBreakGlassGrant": func() error { return f.svc.RecordBreakGlassGrant(ctx, "bg_1", "g1", CredentialRef{}) },
		"ReviewBreakGlass":      func() error { _, err := f.svc.ReviewBreakGlass(ctx, "bg_1", justified(bob, "security")); return err },
		"GetBreakGlass":         func() error { _, err := f.svc.GetBreakGlass(ctx, "bg_1"); return err },
		"ListBreakGlass":        func() error { _, err := f.svc.ListBreakGlass(ctx, BreakGlassFilter{}); return err },
		"EscalateOverdue":       func() error { _, err := f.svc.EscalateOverdue(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s() without a BreakGlassStore err = %v, want ErrUnsupported", name, err)
		}
	}
}
