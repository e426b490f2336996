package storetest

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/writ-dev/writ/approval"
)

// Sizes of the concurrency tests.
const (
	concurrentUpdates = 200 // goroutines each appending one review
	raceRuns          = 200 // approve-vs-deny races
)

// errRefused is the error fns return to refuse an update.
var errRefused = errors.New("storetest: update refused")

// RunApprovalSuite runs the approval.Store contract. newStore must return
// a new, empty store each time it is called and close it with t.Cleanup.
// Subtests run in parallel.
func RunApprovalSuite(t *testing.T, newStore func(t *testing.T) approval.Store) {
	t.Run("CreateRequest_GetRequest_RoundTrip", func(t *testing.T) {
		t.Parallel()
		testCreateGet(t, newStore(t))
	})
	t.Run("CreateRequest_ErrConflict", func(t *testing.T) {
		t.Parallel()
		testCreateConflict(t, newStore(t))
	})
	t.Run("GetRequest_ErrNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.GetRequest(t.Context(), "r_missing"); !errors.Is(err, approval.ErrNotFound) {
			t.Errorf("GetRequest(missing) err = %v, want ErrNotFound", err)
		}
	})
	t.Run("ReturnedValuesAreCopies", func(t *testing.T) {
		t.Parallel()
		testCopies(t, newStore(t))
	})
	t.Run("UpdateRequest", func(t *testing.T) {
		t.Parallel()
		testUpdate(t, newStore)
	})
	t.Run("UpdateRequest_ConcurrentUpdatesNotLost", func(t *testing.T) {
		t.Parallel()
		testConcurrentUpdates(t, newStore(t))
	})
	t.Run("UpdateRequest_ApproveDenyRaceHasOneWinner", func(t *testing.T) {
		t.Parallel()
		testApproveDenyRace(t, newStore(t))
	})
	t.Run("ListRequests", func(t *testing.T) {
		t.Parallel()
		testList(t, newStore(t))
	})
	t.Run("AddGrant_Grants", func(t *testing.T) {
		t.Parallel()
		testGrants(t, newStore(t))
	})
	t.Run("GrantsFor", func(t *testing.T) {
		t.Parallel()
		testGrantsFor(t, newStore(t))
	})
}

// mustCreate stores r or fails the test.
func mustCreate(t *testing.T, s approval.Store, r approval.Request) {
	t.Helper()
	if err := s.CreateRequest(t.Context(), r); err != nil {
		t.Fatalf("CreateRequest(%s) err = %v", r.ID, err)
	}
}

// mustGet reads request id or fails the test.
func mustGet(t *testing.T, s approval.Store, id string) approval.Request {
	t.Helper()
	r, err := s.GetRequest(t.Context(), id)
	if err != nil {
		t.Fatalf("GetRequest(%s) err = %v", id, err)
	}
	return r
}

// mustAddGrant records g or fails the test.
func mustAddGrant(t *testing.T, s approval.Store, g approval.GrantRecord) {
	t.Helper()
	if err := s.AddGrant(t.Context(), g); err != nil {
		t.Fatalf("AddGrant(%s/%s) err = %v", g.RequestID, g.GrantID, err)
	}
}

func testCreateGet(t *testing.T, s approval.Store) {
	want := fullRequest("r_full", 0)
	checkAllFieldsSet(t, want)
	mustCreate(t, s, want)
	got := mustGet(t, s, want.ID)
	if diff := cmp.Diff(want, got, requestOpts); diff != "" {
		t.Errorf("GetRequest() mismatch (-want +got):\n%s", diff)
	}
	if got.Version == 0 {
		t.Errorf("GetRequest().Version = 0, want the store to assign a non-zero version")
	}
}

func testCreateConflict(t *testing.T, s approval.Store) {
	orig := pendingRequest("r_dup", 0)
	mustCreate(t, s, orig)
	other := pendingRequest("r_dup", time.Hour)
	other.Requester = requester2
	if err := s.CreateRequest(t.Context(), other); !errors.Is(err, approval.ErrConflict) {
		t.Errorf("CreateRequest(existing id) err = %v, want ErrConflict", err)
	}
	if diff := cmp.Diff(orig, mustGet(t, s, orig.ID), requestOpts); diff != "" {
		t.Errorf("duplicate create changed the stored request (-want +got):\n%s", diff)
	}
}

func testCopies(t *testing.T, s approval.Store) {
	in := fullRequest("r_copy", 0)
	want := fullRequest("r_copy", 0)
	mustCreate(t, s, in)
	in.Reviews[0].Groups[0] = "mutated-after-create"
	in.Reviews[0].Comment = "mutated-after-create"

	got := mustGet(t, s, "r_copy")
	got.Reviews[0].Groups[0] = "mutated-after-get"
	got.Reviews = append(got.Reviews, approval.Review{Reviewer: "oidc:x#y"})

	upd, err := s.UpdateRequest(t.Context(), "r_copy", func(r *approval.Request) error { return nil })
	if err != nil {
		t.Fatalf("UpdateRequest() err = %v", err)
	}
	upd.Reviews[0].Groups[1] = "mutated-after-update"

	if diff := cmp.Diff(want, mustGet(t, s, "r_copy"), requestOpts); diff != "" {
		t.Errorf("stored request changed through a caller's value (-want +got):\n%s", diff)
	}
}

func testUpdate(t *testing.T, newStore func(t *testing.T) approval.Store) {
	approve := func(r *approval.Request) error {
		if r.State != approval.StatePending {
			return fmt.Errorf("state %s: %w", r.State, approval.ErrResolved)
		}
		r.State = approval.StateApproved
		r.Reviews = append(r.Reviews, approval.Review{Reviewer: reviewer, Decision: approval.DecisionApprove, At: epoch.Add(time.Minute)})
		r.ApprovedAt = epoch.Add(time.Minute)
		r.WindowEnd = epoch.Add(time.Minute + r.Duration)
		return nil
	}
	tests := []struct {
		name    string
		id      string
		fn      func(*approval.Request) error
		wantErr error // compared with ==: fn's error must come back unchanged
		wantIs  error // compared with errors.Is
		mutate  func(*approval.Request)
	}{
		{
			name:   "fn's changes are stored",
			id:     "r_1",
			fn:     approve,
			mutate: func(r *approval.Request) { _ = approve(r) },
		},
		{
			name: "fn's error is returned unchanged and nothing is written",
			id:   "r_1",
			fn: func(r *approval.Request) error {
				r.State = approval.StateDenied
				r.Reviews = append(r.Reviews, approval.Review{Reviewer: reviewer, Decision: approval.DecisionDeny})
				return errRefused
			},
			wantErr: errRefused,
		},
		{
			name: "fn setting Version is ignored",
			id:   "r_1",
			fn: func(r *approval.Request) error {
				r.Version = 12345
				r.ResolutionNote = "note"
				return nil
			},
			mutate: func(r *approval.Request) { r.ResolutionNote = "note" },
		},
		{
			name:   "unknown request returns ErrNotFound without calling fn",
			id:     "r_missing",
			fn:     func(*approval.Request) error { panic("fn called for a missing request") },
			wantIs: approval.ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			mustCreate(t, s, pendingRequest("r_1", 0))
			before := mustGet(t, s, "r_1")

			got, err := s.UpdateRequest(t.Context(), tt.id, tt.fn)
			switch {
			case tt.wantErr != nil:
				if err != tt.wantErr { //nolint:errorlint // the contract is "unchanged"
					t.Fatalf("UpdateRequest() err = %v, want %v unchanged", err, tt.wantErr)
				}
			case tt.wantIs != nil:
				if !errors.Is(err, tt.wantIs) {
					t.Fatalf("UpdateRequest() err = %v, want %v", err, tt.wantIs)
				}
			case err != nil:
				t.Fatalf("UpdateRequest() err = %v", err)
			}

			after := mustGet(t, s, "r_1")
			if err != nil {
				if diff := cmp.Diff(before, after, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("failed UpdateRequest wrote (-before +after):\n%s", diff)
				}
				return
			}
			want := before
			tt.mutate(&want)
			if diff := cmp.Diff(want, after, requestOpts); diff != "" {
				t.Errorf("stored request mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(after, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("UpdateRequest() returned something other than what is stored (-stored +returned):\n%s", diff)
			}
			if after.Version <= before.Version {
				t.Errorf("Version after update = %d, want > %d", after.Version, before.Version)
			}
		})
	}
}

// testConcurrentUpdates appends one review from each of many goroutines
// at once: a lost update would lose a review.
func testConcurrentUpdates(t *testing.T, s approval.Store) {
	mustCreate(t, s, pendingRequest("r_busy", 0))
	v0 := mustGet(t, s, "r_busy").Version
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range concurrentUpdates {
		wg.Go(func() {
			<-start
			who := approval.Principal(fmt.Sprintf("oidc:https://idp.example.com#reviewer-%03d", i))
			_, err := s.UpdateRequest(t.Context(), "r_busy", func(r *approval.Request) error {
				r.Reviews = append(r.Reviews, approval.Review{Reviewer: who, Decision: approval.DecisionApprove, Stage: i})
				return nil
			})
			if err != nil {
				t.Errorf("UpdateRequest(#%d) err = %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()

	got := mustGet(t, s, "r_busy")
	if len(got.Reviews) != concurrentUpdates {
		t.Errorf("len(Reviews) = %d after %d concurrent appends, want %d (lost updates)", len(got.Reviews), concurrentUpdates, concurrentUpdates)
	}
	seen := make(map[int]bool)
	for _, rv := range got.Reviews {
		if seen[rv.Stage] {
			t.Errorf("review %d stored twice", rv.Stage)
		}
		seen[rv.Stage] = true
	}
	if got.Version < v0+concurrentUpdates {
		t.Errorf("Version = %d after %d updates from %d, want at least %d", got.Version, concurrentUpdates, v0, v0+concurrentUpdates)
	}
}

// testApproveDenyRace races an approval against a denial of the same
// pending request, many times: exactly one may win, and the state it set
// must stick.
func testApproveDenyRace(t *testing.T, s approval.Store) {
	resolve := func(to approval.State, by approval.Principal) func(*approval.Request) error {
		return func(r *approval.Request) error {
			if r.State != approval.StatePending {
				return fmt.Errorf("request is %s: %w", r.State, approval.ErrResolved)
			}
			r.State, r.ResolvedBy = to, by
			return nil
		}
	}
	contenders := []struct {
		state approval.State
		by    approval.Principal
	}{
		{approval.StateApproved, "oidc:https://idp.example.com#approver"},
		{approval.StateDenied, "oidc:https://idp.example.com#denier"},
	}
	wins := make(map[approval.State]int)
	for run := range raceRuns {
		id := fmt.Sprintf("r_race_%03d", run)
		mustCreate(t, s, pendingRequest(id, time.Duration(run)*time.Second))
		errs := make([]error, len(contenders))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, c := range contenders {
			wg.Go(func() {
				<-start
				_, errs[i] = s.UpdateRequest(t.Context(), id, resolve(c.state, c.by))
			})
		}
		close(start)
		wg.Wait()

		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("run %d: both contenders won", run)
			case err == nil:
				winner = i
			case !errors.Is(err, approval.ErrResolved):
				t.Fatalf("run %d: contender %s err = %v, want nil or ErrResolved", run, contenders[i].state, err)
			}
		}
		if winner < 0 {
			t.Fatalf("run %d: nobody won: %v", run, errs)
		}
		got := mustGet(t, s, id)
		if w := contenders[winner]; got.State != w.state || got.ResolvedBy != w.by {
			t.Fatalf("run %d: stored state %s by %s, want the winner's %s by %s", run, got.State, got.ResolvedBy, w.state, w.by)
		}
		wins[got.State]++
	}
	t.Logf("wins over %d runs: %v", raceRuns, wins)
}

func testList(t *testing.T, s approval.Store) {
	type spec struct {
		id          string
		state       approval.State
		requester   approval.Principal
		beneficiary approval.Principal
		entitlement string
		offset      time.Duration
	}
	// Created out of order, so that store order is not time order.
	specs := []spec{
		{"r_c", approval.StateApproved, requester, benefA, "db-admin", 3 * time.Minute},
		{"r_a", approval.StatePending, requester, benefA, "db-admin", 1 * time.Minute},
		{"r_e", approval.StatePending, requester2, benefAB, "db-read", 5 * time.Minute},
		{"r_b", approval.StateDenied, requester2, benefA, "db-read", 2 * time.Minute},
		{"r_d", approval.StatePending, requester, benefAB, "db-admin", 4 * time.Minute},
		{"r_f", approval.StateExpired, requester, benefA, "db-admin", 6 * time.Minute},
	}
	for _, sp := range specs {
		r := pendingRequest(sp.id, sp.offset)
		r.State, r.Requester, r.Beneficiary, r.Entitlement = sp.state, sp.requester, sp.beneficiary, sp.entitlement
		mustCreate(t, s, r)
	}
	tests := []struct {
		name   string
		filter approval.Filter
		want   []string
	}{
		{"zero filter lists all, newest first", approval.Filter{}, []string{"r_f", "r_e", "r_d", "r_c", "r_b", "r_a"}},
		{"one state", approval.Filter{States: []approval.State{approval.StatePending}}, []string{"r_e", "r_d", "r_a"}},
		{"several states", approval.Filter{States: []approval.State{approval.StateApproved, approval.StateDenied}}, []string{"r_c", "r_b"}},
		{"requester", approval.Filter{Requester: requester2}, []string{"r_e", "r_b"}},
		{"beneficiary is matched exactly, not as a prefix", approval.Filter{Beneficiary: benefA}, []string{"r_f", "r_c", "r_b", "r_a"}},
		{"entitlement", approval.Filter{Entitlement: "db-read"}, []string{"r_e", "r_b"}},
		{"fields combine", approval.Filter{States: []approval.State{approval.StatePending}, Requester: requester, Entitlement: "db-admin"}, []string{"r_d", "r_a"}},
		{"limit keeps the newest", approval.Filter{Limit: 2}, []string{"r_f", "r_e"}},
		{"limit applies after filtering", approval.Filter{States: []approval.State{approval.StatePending}, Limit: 2}, []string{"r_e", "r_d"}},
		{"limit above the count", approval.Filter{Requester: requester2, Limit: 10}, []string{"r_e", "r_b"}},
		{"no match", approval.Filter{Requester: "oidc:https://idp.example.com#nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListRequests(t.Context(), tt.filter)
			if err != nil {
				t.Fatalf("ListRequests(%+v) err = %v", tt.filter, err)
			}
			ids := make([]string, 0, len(got))
			for _, r := range got {
				ids = append(ids, r.ID)
			}
			if diff := cmp.Diff(tt.want, ids, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListRequests(%+v) IDs mismatch (-want +got):\n%s", tt.filter, diff)
			}
		})
	}
	t.Run("listed requests are complete", func(t *testing.T) {
		got, err := s.ListRequests(t.Context(), approval.Filter{Limit: 1})
		if err != nil || len(got) != 1 {
			t.Fatalf("ListRequests(limit 1) = %d requests, err %v", len(got), err)
		}
		if diff := cmp.Diff(mustGet(t, s, got[0].ID), got[0], cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("listed request differs from GetRequest (-get +list):\n%s", diff)
		}
	})
}

func testGrants(t *testing.T, s approval.Store) {
	mustCreate(t, s, pendingRequest("r_1", 0))
	mustCreate(t, s, pendingRequest("r_2", 0))
	full := grantAt("r_1", "g_b", 2*time.Minute)
	checkAllFieldsSet(t, full)
	// Added out of issue order; g_a and g_b are listed by IssuedAt.
	for _, g := range []approval.GrantRecord{full, grantAt("r_2", "g_x", time.Minute), grantAt("r_1", "g_c", 3*time.Minute), grantAt("r_1", "g_a", time.Minute)} {
		mustAddGrant(t, s, g)
	}

	got, err := s.Grants(t.Context(), "r_1")
	if err != nil {
		t.Fatalf("Grants(r_1) err = %v", err)
	}
	want := []approval.GrantRecord{grantAt("r_1", "g_a", time.Minute), full, grantAt("r_1", "g_c", 3*time.Minute)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Grants(r_1) mismatch, want oldest first (-want +got):\n%s", diff)
	}

	mustCreate(t, s, pendingRequest("r_none", 0))
	if got, err := s.Grants(t.Context(), "r_none"); err != nil || len(got) != 0 {
		t.Errorf("Grants(request without grants) = %v, %v; want none, nil", got, err)
	}

	errTests := []struct {
		name string
		call func() error
		want error
	}{
		{"AddGrant to an unknown request", func() error { return s.AddGrant(t.Context(), grantAt("r_missing", "g_z", 0)) }, approval.ErrNotFound},
		{"AddGrant of a recorded grant", func() error { return s.AddGrant(t.Context(), grantAt("r_1", "g_a", time.Minute)) }, approval.ErrConflict},
		{"Grants of an unknown request", func() error { _, err := s.Grants(t.Context(), "r_missing"); return err }, approval.ErrNotFound},
	}
	for _, tt := range errTests {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if got, _ := s.Grants(t.Context(), "r_1"); len(got) != 3 {
		t.Errorf("Grants(r_1) after failed adds = %d grants, want 3", len(got))
	}
}

func testGrantsFor(t *testing.T, s approval.Store) {
	ra, rb, rab := pendingRequest("r_a1", 0), pendingRequest("r_a2", 0), pendingRequest("r_ab", 0)
	rab.Beneficiary = benefAB
	for _, r := range []approval.Request{ra, rb, rab} {
		mustCreate(t, s, r)
	}
	// Beneficiary A: g1..g5 at minutes 1..5 across two requests.
	byMinute := map[int]approval.GrantRecord{}
	for _, m := range []int{3, 1, 5, 2, 4} {
		req := "r_a1"
		if m%2 == 0 {
			req = "r_a2"
		}
		g := grantAt(req, fmt.Sprintf("g%d", m), time.Duration(m)*time.Minute)
		byMinute[m] = g
		mustAddGrant(t, s, g)
	}
	mustAddGrant(t, s, grantAt("r_ab", "g_ab", 10*time.Minute))

	pick := func(minutes ...int) []approval.GrantRecord {
		var out []approval.GrantRecord
		for _, m := range minutes {
			out = append(out, byMinute[m])
		}
		return out
	}
	tests := []struct {
		name        string
		beneficiary approval.Principal
		since       time.Time
		limit       int
		want        []approval.GrantRecord
	}{
		{"all, newest first", benefA, time.Time{}, 0, pick(5, 4, 3, 2, 1)},
		{"since is inclusive", benefA, epoch.Add(3 * time.Minute), 0, pick(5, 4, 3)},
		{"limit keeps the newest", benefA, time.Time{}, 2, pick(5, 4)},
		{"since and limit", benefA, epoch.Add(2 * time.Minute), 10, pick(5, 4, 3, 2)},
		{"since after the last grant", benefA, epoch.Add(time.Hour), 0, nil},
		{"a beneficiary is not a prefix match", benefAB, time.Time{}, 0, []approval.GrantRecord{grantAt("r_ab", "g_ab", 10*time.Minute)}},
		{"unknown beneficiary", "spiffe://example.org/ns/prod/sa/other", time.Time{}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.GrantsFor(t.Context(), tt.beneficiary, tt.since, tt.limit)
			if err != nil {
				t.Fatalf("GrantsFor(%s, %v, %d) err = %v", tt.beneficiary, tt.since, tt.limit, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("GrantsFor(%s, %v, %d) mismatch (-want +got):\n%s", tt.beneficiary, tt.since, tt.limit, diff)
			}
		})
	}
}

// RunApprovalReopen checks that requests and grants survive closing a
// store and opening it again. Each call of open must return a store over
// the same data; the stores it returns must implement io.Closer, and the
// suite closes each one (the last with t.Cleanup), so open must not.
func RunApprovalReopen(t *testing.T, open func(t *testing.T) approval.Store) {
	closeStore := func(t *testing.T, s approval.Store) {
		t.Helper()
		c, ok := s.(io.Closer)
		if !ok {
			t.Fatalf("%T does not implement io.Closer", s)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("Close() err = %v", err)
		}
	}

	s := open(t)
	want := fullRequest("r_persist", 0)
	mustCreate(t, s, want)
	upd, err := s.UpdateRequest(t.Context(), want.ID, func(r *approval.Request) error {
		r.ResolutionNote = "updated before close"
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateRequest() err = %v", err)
	}
	g := grantAt(want.ID, "g_persist", time.Minute)
	mustAddGrant(t, s, g)
	closeStore(t, s)

	s = open(t)
	t.Cleanup(func() { closeStore(t, s) })
	got := mustGet(t, s, want.ID)
	if diff := cmp.Diff(upd, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("request after reopen mismatch (-before close +after reopen):\n%s", diff)
	}
	grants, err := s.Grants(t.Context(), want.ID)
	if err != nil || !slices.EqualFunc(grants, []approval.GrantRecord{g}, func(a, b approval.GrantRecord) bool { return cmp.Equal(a, b) }) {
		t.Errorf("Grants() after reopen = %v, %v; want [%v]", grants, err, g)
	}
	if got, err := s.GrantsFor(t.Context(), want.Beneficiary, time.Time{}, 0); err != nil || len(got) != 1 {
		t.Errorf("GrantsFor() after reopen = %v, %v; want the one grant", got, err)
	}
	again, err := s.UpdateRequest(t.Context(), want.ID, func(r *approval.Request) error { return nil })
	if err != nil || again.Version <= upd.Version {
		t.Errorf("UpdateRequest() after reopen = version %d, err %v; want version > %d", again.Version, err, upd.Version)
	}
}
