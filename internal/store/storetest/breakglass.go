package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/writ-dev/writ/approval"
)

// Principals of the break-glass fixtures. takerAB has takerA as a prefix,
// to catch filters that match prefixes.
const (
	takerA  approval.Principal = "oidc:https://idp.example.com#sam"
	takerAB approval.Principal = "oidc:https://idp.example.com#samantha"
)

// breakGlassOpts compares break-glass uses, ignoring the store-assigned
// Version and the difference between nil and empty slices.
var breakGlassOpts = cmp.Options{
	cmpopts.IgnoreFields(approval.BreakGlass{}, "Version"),
	cmpopts.EquateEmpty(),
}

// fullBreakGlass returns a break-glass use with every field set (Version
// aside), taken at epoch+offset.
func fullBreakGlass(id string, offset time.Duration) approval.BreakGlass {
	taken := epoch.Add(offset)
	return approval.BreakGlass{
		ID:          id,
		Taker:       takerA,
		Beneficiary: benefA,
		Entitlement: "db-admin",
		Reason:      "orders table locked",
		Incident:    "INC-42",
		GrantID:     "g_1",
		Credential:  approval.CredentialRef{Kind: approval.KindVaultToken, ID: "accessor-g_1", Expires: taken.Add(5 * time.Minute)},
		TakenAt:     taken,
		ReviewDue:   taken.Add(24 * time.Hour),
		State:       approval.BreakGlassClosed,
		Reviews: []approval.BreakGlassReview{{
			Reviewer: reviewer,
			Groups:   []string{"security", "sre"},
			Outcome:  approval.OutcomeJustified,
			Notes:    "incident confirmed",
			At:       taken.Add(time.Hour),
		}},
		Outcome:     approval.OutcomeJustified,
		ClosedAt:    taken.Add(time.Hour),
		EscalatedAt: taken.Add(30 * time.Minute),
		Version:     99, // the store must ignore it
	}
}

// openBreakGlass returns a minimal open break-glass use by taker.
func openBreakGlass(id string, taker approval.Principal, offset time.Duration) approval.BreakGlass {
	taken := epoch.Add(offset)
	return approval.BreakGlass{
		ID:          id,
		Taker:       taker,
		Beneficiary: taker,
		Entitlement: "db-admin",
		Reason:      "incident",
		TakenAt:     taken,
		ReviewDue:   taken.Add(24 * time.Hour),
		State:       approval.BreakGlassOpen,
	}
}

// RunBreakGlassSuite runs the approval.BreakGlassStore contract. newStore
// must return a new, empty store each time it is called and close it with
// t.Cleanup. Subtests run in parallel.
func RunBreakGlassSuite(t *testing.T, newStore func(t *testing.T) approval.BreakGlassStore) {
	t.Run("CreateBreakGlass_GetBreakGlass_RoundTrip", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		want := fullBreakGlass("bg_full", 0)
		checkAllFieldsSet(t, want)
		mustCreateBreakGlass(t, s, want)
		got := mustGetBreakGlass(t, s, want.ID)
		if diff := cmp.Diff(want, got, breakGlassOpts); diff != "" {
			t.Errorf("GetBreakGlass() mismatch (-want +got):\n%s", diff)
		}
		if got.Version == 0 {
			t.Errorf("GetBreakGlass().Version = 0, want the store to assign a non-zero version")
		}
	})
	t.Run("GetBreakGlass_ErrNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.GetBreakGlass(t.Context(), "bg_missing"); !errors.Is(err, approval.ErrNotFound) {
			t.Errorf("GetBreakGlass(missing) err = %v, want ErrNotFound", err)
		}
	})
	t.Run("CreateBreakGlass_ErrConflict", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		orig := openBreakGlass("bg_dup", takerA, 0)
		mustCreateBreakGlass(t, s, orig)
		other := openBreakGlass("bg_dup", takerAB, time.Hour)
		if err := s.CreateBreakGlass(t.Context(), other); !errors.Is(err, approval.ErrConflict) {
			t.Errorf("CreateBreakGlass(existing id) err = %v, want ErrConflict", err)
		}
		if diff := cmp.Diff(orig, mustGetBreakGlass(t, s, orig.ID), breakGlassOpts); diff != "" {
			t.Errorf("duplicate create changed the stored use (-want +got):\n%s", diff)
		}
	})
	t.Run("ReturnedValuesAreCopies", func(t *testing.T) {
		t.Parallel()
		testBreakGlassCopies(t, newStore(t))
	})
	t.Run("UpdateBreakGlass", func(t *testing.T) {
		t.Parallel()
		testUpdateBreakGlass(t, newStore)
	})
	t.Run("UpdateBreakGlass_ConcurrentUpdatesNotLost", func(t *testing.T) {
		t.Parallel()
		testConcurrentBreakGlassUpdates(t, newStore(t))
	})
	t.Run("ListBreakGlass", func(t *testing.T) {
		t.Parallel()
		testListBreakGlass(t, newStore(t))
	})
}

// mustCreateBreakGlass stores bg or fails the test.
func mustCreateBreakGlass(t *testing.T, s approval.BreakGlassStore, bg approval.BreakGlass) {
	t.Helper()
	if err := s.CreateBreakGlass(t.Context(), bg); err != nil {
		t.Fatalf("CreateBreakGlass(%s) err = %v", bg.ID, err)
	}
}

// mustGetBreakGlass reads break-glass id or fails the test.
func mustGetBreakGlass(t *testing.T, s approval.BreakGlassStore, id string) approval.BreakGlass {
	t.Helper()
	bg, err := s.GetBreakGlass(t.Context(), id)
	if err != nil {
		t.Fatalf("GetBreakGlass(%s) err = %v", id, err)
	}
	return bg
}

func testBreakGlassCopies(t *testing.T, s approval.BreakGlassStore) {
	in := fullBreakGlass("bg_copy", 0)
	want := fullBreakGlass("bg_copy", 0)
	mustCreateBreakGlass(t, s, in)
	in.Reviews[0].Groups[0] = "mutated-after-create"
	in.Reviews[0].Notes = "mutated-after-create"

	got := mustGetBreakGlass(t, s, "bg_copy")
	got.Reviews[0].Groups[0] = "mutated-after-get"
	got.Reviews = append(got.Reviews, approval.BreakGlassReview{Reviewer: "oidc:x#y"})

	upd, err := s.UpdateBreakGlass(t.Context(), "bg_copy", func(*approval.BreakGlass) error { return nil })
	if err != nil {
		t.Fatalf("UpdateBreakGlass() err = %v", err)
	}
	upd.Reviews[0].Groups[1] = "mutated-after-update"

	if diff := cmp.Diff(want, mustGetBreakGlass(t, s, "bg_copy"), breakGlassOpts); diff != "" {
		t.Errorf("stored use changed through a caller's value (-want +got):\n%s", diff)
	}
}

func testUpdateBreakGlass(t *testing.T, newStore func(t *testing.T) approval.BreakGlassStore) {
	review := func(bg *approval.BreakGlass) error {
		if bg.State != approval.BreakGlassOpen {
			return fmt.Errorf("state %s: %w", bg.State, approval.ErrResolved)
		}
		at := epoch.Add(time.Hour)
		bg.Reviews = append(bg.Reviews, approval.BreakGlassReview{Reviewer: reviewer, Groups: []string{"security"}, Outcome: approval.OutcomeUnjustified, At: at})
		bg.State, bg.Outcome, bg.ClosedAt = approval.BreakGlassClosed, approval.OutcomeUnjustified, at
		return nil
	}
	tests := []struct {
		name    string
		id      string
		fn      func(*approval.BreakGlass) error
		wantErr error // compared with ==: fn's error must come back unchanged
		wantIs  error // compared with errors.Is
		mutate  func(*approval.BreakGlass)
	}{
		{
			name:   "fn's changes are stored",
			id:     "bg_1",
			fn:     review,
			mutate: func(bg *approval.BreakGlass) { _ = review(bg) },
		},
		{
			name: "fn's error is returned unchanged and nothing is written",
			id:   "bg_1",
			fn: func(bg *approval.BreakGlass) error {
				bg.EscalatedAt = epoch.Add(48 * time.Hour)
				return errRefused
			},
			wantErr: errRefused,
		},
		{
			name: "fn setting Version is ignored",
			id:   "bg_1",
			fn: func(bg *approval.BreakGlass) error {
				bg.Version = 12345
				bg.GrantID = "g_9"
				return nil
			},
			mutate: func(bg *approval.BreakGlass) { bg.GrantID = "g_9" },
		},
		{
			name:   "unknown use returns ErrNotFound without calling fn",
			id:     "bg_missing",
			fn:     func(*approval.BreakGlass) error { panic("fn called for a missing break-glass use") },
			wantIs: approval.ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			mustCreateBreakGlass(t, s, openBreakGlass("bg_1", takerA, 0))
			before := mustGetBreakGlass(t, s, "bg_1")

			got, err := s.UpdateBreakGlass(t.Context(), tt.id, tt.fn)
			switch {
			case tt.wantErr != nil:
				if err != tt.wantErr { //nolint:errorlint // the contract is "unchanged"
					t.Fatalf("UpdateBreakGlass() err = %v, want %v unchanged", err, tt.wantErr)
				}
			case tt.wantIs != nil:
				if !errors.Is(err, tt.wantIs) {
					t.Fatalf("UpdateBreakGlass() err = %v, want %v", err, tt.wantIs)
				}
			case err != nil:
				t.Fatalf("UpdateBreakGlass() err = %v", err)
			}

			after := mustGetBreakGlass(t, s, "bg_1")
			if err != nil {
				if diff := cmp.Diff(before, after, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("failed UpdateBreakGlass wrote (-before +after):\n%s", diff)
				}
				return
			}
			want := before
			tt.mutate(&want)
			if diff := cmp.Diff(want, after, breakGlassOpts); diff != "" {
				t.Errorf("stored use mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(after, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("UpdateBreakGlass() returned something other than what is stored (-stored +returned):\n%s", diff)
			}
			if after.Version <= before.Version {
				t.Errorf("Version after update = %d, want > %d", after.Version, before.Version)
			}
		})
	}
}

// testConcurrentBreakGlassUpdates appends one review from each of many
// goroutines at once: a lost update would lose a review.
func testConcurrentBreakGlassUpdates(t *testing.T, s approval.BreakGlassStore) {
	mustCreateBreakGlass(t, s, openBreakGlass("bg_busy", takerA, 0))
	v0 := mustGetBreakGlass(t, s, "bg_busy").Version
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range concurrentUpdates {
		wg.Go(func() {
			<-start
			who := approval.Principal(fmt.Sprintf("oidc:https://idp.example.com#reviewer-%03d", i))
			_, err := s.UpdateBreakGlass(t.Context(), "bg_busy", func(bg *approval.BreakGlass) error {
				bg.Reviews = append(bg.Reviews, approval.BreakGlassReview{Reviewer: who, Outcome: approval.OutcomeJustified})
				return nil
			})
			if err != nil {
				t.Errorf("UpdateBreakGlass(#%d) err = %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()

	got := mustGetBreakGlass(t, s, "bg_busy")
	if len(got.Reviews) != concurrentUpdates {
		t.Errorf("len(Reviews) = %d after %d concurrent appends, want %d (lost updates)", len(got.Reviews), concurrentUpdates, concurrentUpdates)
	}
	seen := make(map[approval.Principal]bool)
	for _, rv := range got.Reviews {
		if seen[rv.Reviewer] {
			t.Errorf("review by %s stored twice", rv.Reviewer)
		}
		seen[rv.Reviewer] = true
	}
	if got.Version < v0+concurrentUpdates {
		t.Errorf("Version = %d after %d updates from %d, want at least %d", got.Version, concurrentUpdates, v0, v0+concurrentUpdates)
	}
}

func testListBreakGlass(t *testing.T, s approval.BreakGlassStore) {
	type spec struct {
		id     string
		taker  approval.Principal
		closed bool
		offset time.Duration
	}
	// Created out of order, so that store order is not time order.
	specs := []spec{
		{"bg_c", takerA, false, 3 * time.Minute},
		{"bg_a", takerA, true, 1 * time.Minute},
		{"bg_e", takerAB, false, 5 * time.Minute},
		{"bg_b", takerAB, true, 2 * time.Minute},
		{"bg_d", takerA, false, 4 * time.Minute},
	}
	for _, sp := range specs {
		bg := openBreakGlass(sp.id, sp.taker, sp.offset)
		if sp.closed {
			bg.State, bg.Outcome, bg.ClosedAt = approval.BreakGlassClosed, approval.OutcomeJustified, bg.TakenAt.Add(time.Hour)
		}
		mustCreateBreakGlass(t, s, bg)
	}
	tests := []struct {
		name   string
		filter approval.BreakGlassFilter
		want   []string
	}{
		{"zero filter lists all, newest first", approval.BreakGlassFilter{}, []string{"bg_e", "bg_d", "bg_c", "bg_b", "bg_a"}},
		{"open", approval.BreakGlassFilter{Open: true}, []string{"bg_e", "bg_d", "bg_c"}},
		{"taker is matched exactly, not as a prefix", approval.BreakGlassFilter{Taker: takerA}, []string{"bg_d", "bg_c", "bg_a"}},
		{"open and taker combine", approval.BreakGlassFilter{Open: true, Taker: takerAB}, []string{"bg_e"}},
		{"overdue is left to the service", approval.BreakGlassFilter{Overdue: true}, []string{"bg_e", "bg_d", "bg_c", "bg_b", "bg_a"}},
		{"limit keeps the newest", approval.BreakGlassFilter{Limit: 2}, []string{"bg_e", "bg_d"}},
		{"limit applies after filtering", approval.BreakGlassFilter{Taker: takerA, Limit: 2}, []string{"bg_d", "bg_c"}},
		{"limit above the count", approval.BreakGlassFilter{Open: true, Limit: 10}, []string{"bg_e", "bg_d", "bg_c"}},
		{"no match", approval.BreakGlassFilter{Taker: "oidc:https://idp.example.com#nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListBreakGlass(t.Context(), tt.filter)
			if err != nil {
				t.Fatalf("ListBreakGlass(%+v) err = %v", tt.filter, err)
			}
			ids := make([]string, 0, len(got))
			for _, bg := range got {
				ids = append(ids, bg.ID)
			}
			if diff := cmp.Diff(tt.want, ids, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListBreakGlass(%+v) IDs mismatch (-want +got):\n%s", tt.filter, diff)
			}
		})
	}
	t.Run("listed uses are complete", func(t *testing.T) {
		got, err := s.ListBreakGlass(t.Context(), approval.BreakGlassFilter{Limit: 1})
		if err != nil || len(got) != 1 {
			t.Fatalf("ListBreakGlass(limit 1) = %d uses, err %v", len(got), err)
		}
		if diff := cmp.Diff(mustGetBreakGlass(t, s, got[0].ID), got[0], cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("listed use differs from GetBreakGlass (-get +list):\n%s", diff)
		}
	})
}
