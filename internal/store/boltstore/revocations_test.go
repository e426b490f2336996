package boltstore_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// item returns a queued revocation due at epoch+due, with every field set.
func item(id string, due time.Duration) revoke.Item {
	return revoke.Item{
		ID:         id,
		Ref:        approval.CredentialRef{Kind: approval.KindVaultToken, ID: "accessor-" + id, Expires: epoch.Add(time.Hour)},
		RequestID:  "r_1",
		GrantID:    "g_" + id,
		Attempts:   2,
		NextAt:     epoch.Add(due),
		EnqueuedAt: epoch.Add(-time.Minute),
		LastError:  "vault: connection refused",
	}
}

func mustEnqueue(t *testing.T, q revoke.Queue, its ...revoke.Item) {
	t.Helper()
	for _, it := range its {
		if err := q.Enqueue(t.Context(), it); err != nil {
			t.Fatalf("Enqueue(%s) err = %v", it.ID, err)
		}
	}
}

func dueIDs(t *testing.T, q revoke.Queue, now time.Time, lease time.Duration, limit int) []string {
	t.Helper()
	its, err := q.Due(t.Context(), now, lease, limit)
	if err != nil {
		t.Fatalf("Due() err = %v", err)
	}
	var ids []string
	for _, it := range its {
		ids = append(ids, it.ID)
	}
	return ids
}

func TestRevocationQueue_Due(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		now   time.Duration
		limit int
		want  []string
	}{
		{"nothing due yet", -time.Hour, 0, nil},
		{"due at exactly NextAt", 0, 0, []string{"a"}},
		{"earliest first", 3 * time.Minute, 0, []string{"a", "c", "b"}},
		{"limit keeps the earliest", 3 * time.Minute, 2, []string{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := mustOpen(t, dbPath(t), boltstore.Options{}).Revocations()
			mustEnqueue(t, q, item("b", 2*time.Minute), item("a", 0), item("c", time.Minute), item("d", time.Hour))
			if diff := cmp.Diff(tt.want, dueIDs(t, q, epoch.Add(tt.now), time.Minute, tt.limit)); diff != "" {
				t.Errorf("Due() IDs mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRevocationQueue_Lifecycle(t *testing.T) {
	t.Parallel()
	q := mustOpen(t, dbPath(t), boltstore.Options{}).Revocations()
	want := item("a", 0)
	mustEnqueue(t, q, want)

	// Enqueue of a queued ID keeps the original.
	dup := item("a", time.Hour)
	dup.Attempts = 0
	mustEnqueue(t, q, dup)
	if n, err := q.Pending(t.Context()); err != nil || n != 1 {
		t.Fatalf("Pending() = %d, %v; want 1", n, err)
	}

	// Due claims: the item comes back with NextAt = now+lease, and not again
	// until the lease runs out.
	now, lease := epoch.Add(time.Second), 30*time.Second
	got, err := q.Due(t.Context(), now, lease, 10)
	if err != nil {
		t.Fatalf("Due() err = %v", err)
	}
	want.NextAt = now.Add(lease)
	if diff := cmp.Diff([]revoke.Item{want}, got); diff != "" {
		t.Errorf("Due() mismatch (-want +got):\n%s", diff)
	}
	if ids := dueIDs(t, q, now.Add(lease-time.Nanosecond), lease, 10); len(ids) != 0 {
		t.Errorf("Due() during the lease = %v, want nothing", ids)
	}
	if ids := dueIDs(t, q, now.Add(lease), lease, 10); len(ids) != 1 {
		t.Errorf("Due() after the lease = %v, want [a]", ids)
	}

	// Reschedule records the failure.
	next := epoch.Add(time.Hour)
	if err := q.Reschedule(t.Context(), "a", 3, next, "timeout"); err != nil {
		t.Fatalf("Reschedule() err = %v", err)
	}
	got, err = q.Due(t.Context(), next, lease, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("Due(next) = %v, %v; want one item", got, err)
	}
	if got[0].Attempts != 3 || got[0].LastError != "timeout" {
		t.Errorf("after Reschedule: Attempts %d, LastError %q; want 3, timeout", got[0].Attempts, got[0].LastError)
	}

	// Done removes; Done and Reschedule of a missing item are no-ops.
	for _, step := range []func() error{
		func() error { return q.Done(t.Context(), "a") },
		func() error { return q.Done(t.Context(), "a") },
		func() error { return q.Reschedule(t.Context(), "a", 4, next, "late") },
	} {
		if err := step(); err != nil {
			t.Fatalf("err = %v", err)
		}
	}
	if n, err := q.Pending(t.Context()); err != nil || n != 0 {
		t.Errorf("Pending() = %d, %v; want 0 (a rescheduled missing item must not come back)", n, err)
	}
	if err := q.Enqueue(t.Context(), revoke.Item{}); !errors.Is(err, approval.ErrInvalid) {
		t.Errorf("Enqueue(empty id) err = %v, want ErrInvalid", err)
	}
}

// TestRevocationQueue_DueClaimsOnce has many goroutines claim at the same
// instant: each item must be handed out once.
func TestRevocationQueue_DueClaimsOnce(t *testing.T) {
	t.Parallel()
	const items, workers = 50, 8
	q := mustOpen(t, dbPath(t), boltstore.Options{}).Revocations()
	for i := range items {
		mustEnqueue(t, q, item(fmt.Sprintf("i%02d", i), 0))
	}
	var (
		mu     sync.Mutex
		claims = map[string]int{}
		wg     sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				its, err := q.Due(t.Context(), epoch, time.Minute, 3)
				if err != nil {
					t.Errorf("Due() err = %v", err)
					return
				}
				if len(its) == 0 {
					return
				}
				mu.Lock()
				for _, it := range its {
					claims[it.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claims) != items {
		t.Errorf("%d items claimed, want %d", len(claims), items)
	}
	for id, n := range claims {
		if n != 1 {
			t.Errorf("item %s claimed %d times, want 1", id, n)
		}
	}
}

func TestRevocationQueue_SurvivesReopen(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatalf("Open() err = %v", err)
	}
	mustEnqueue(t, s.Revocations(), item("a", 0))
	mustClose(t, s)
	q := mustOpen(t, path, boltstore.Options{}).Revocations()
	if diff := cmp.Diff([]string{"a"}, dueIDs(t, q, epoch, time.Minute, 0)); diff != "" {
		t.Errorf("Due() after reopen mismatch (-want +got):\n%s", diff)
	}
}
