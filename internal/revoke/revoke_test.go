package revoke_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/revoke"
)

func TestNew_Errors(t *testing.T) {
	t.Parallel()
	issuers := map[approval.CredentialKind]revoke.Issuer{approval.KindJWT: newIssuer()}
	q := newQueue(t)
	tests := []struct {
		name string
		cfg  revoke.Config
	}{
		{"no queue", revoke.Config{Issuers: issuers}},
		{"no issuers", revoke.Config{Queue: q}},
		{"nil issuer", revoke.Config{Queue: q, Issuers: map[approval.CredentialKind]revoke.Issuer{approval.KindJWT: nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := revoke.New(tt.cfg); err == nil || r != nil {
				t.Errorf("New() = %v, %v; want nil, error", r, err)
			}
		})
	}
}

func TestRevoker_RevokeAll_AllSucceed(t *testing.T) {
	t.Parallel()
	s := newSetup(t, newQueue(t), nil)
	grants := []approval.GrantRecord{grant("g1", approval.KindVaultToken), grant("g2", approval.KindJWT), grant("g3", approval.KindVaultToken)}
	rec := s.r.RevokeAll(t.Context(), "r_1", grants)

	want := revoke.Receipt{RequestID: "r_1"}
	for _, g := range grants {
		want.Results = append(want.Results, revoke.Result{GrantID: g.GrantID, Ref: g.Ref, Outcome: revoke.OutcomeRevoked})
	}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("RevokeAll() receipt mismatch (-want +got):\n%s", diff)
	}
	if !rec.Complete() || rec.Counts()[revoke.OutcomeRevoked] != 3 {
		t.Errorf("Complete() = %v, Counts() = %v; want true, 3 revoked", rec.Complete(), rec.Counts())
	}
	for _, c := range []struct {
		is *fakeIssuer
		id string
	}{{s.vault, "ref-g1"}, {s.jwt, "ref-g2"}, {s.vault, "ref-g3"}} {
		if n := c.is.callsFor(c.id); n != 1 || !c.is.isRevoked(c.id) {
			t.Errorf("issuer calls for %s = %d (revoked %v), want 1 (true)", c.id, n, c.is.isRevoked(c.id))
		}
	}
	if n := s.pending(t); n != 0 {
		t.Errorf("Pending() = %d after a clean revocation, want 0", n)
	}
	if n := len(s.log.done); n != 0 {
		t.Errorf("OnDone called %d times by RevokeAll, want 0 (its outcomes are in the receipt)", n)
	}
}

func TestRevoker_RevokeAll_Outcomes(t *testing.T) {
	t.Parallel()
	expiredAt := func(d time.Duration) approval.GrantRecord { // expired d after epoch
		g := grant("g1", approval.KindVaultToken)
		g.Ref.Expires = epoch.Add(d)
		return g
	}
	noExpiry := grant("g1", approval.KindVaultToken)
	noExpiry.Ref.Expires = time.Time{}
	noRef := grant("g1", approval.KindJWT)
	noRef.Ref.ID = ""
	tests := []struct {
		name        string
		grant       approval.GrantRecord
		down        bool
		ctx         func(context.Context) context.Context
		want        revoke.Outcome
		wantCalls   int
		wantPending int
		wantErrText string // substring of Result.Error; "" means Error must be empty
	}{
		{name: "live credential is revoked", grant: grant("g1", approval.KindVaultToken), want: revoke.OutcomeRevoked, wantCalls: 1},
		{name: "issuer down: queued", grant: grant("g1", approval.KindVaultToken), down: true, want: revoke.OutcomeQueued, wantCalls: 1, wantPending: 1, wantErrText: errDown.Error()},
		{name: "expired credential: issuer not called", grant: expiredAt(-time.Hour), want: revoke.OutcomeExpired},
		{name: "expired within the leeway is still revoked", grant: expiredAt(-30 * time.Second), want: revoke.OutcomeRevoked, wantCalls: 1},
		{name: "credential without expiry is revoked", grant: noExpiry, want: revoke.OutcomeRevoked, wantCalls: 1},
		{name: "no issuer for the kind: queued", grant: grant("g1", "x509"), want: revoke.OutcomeQueued, wantPending: 1, wantErrText: revoke.ErrNoIssuer.Error()},
		{name: "empty ref id: failed", grant: noRef, want: revoke.OutcomeFailed, wantErrText: revoke.ErrNoRef.Error()},
		{
			name:  "cancelled caller: still queued",
			grant: grant("g1", approval.KindVaultToken),
			ctx: func(ctx context.Context) context.Context {
				ctx, cancel := context.WithCancel(ctx)
				cancel()
				return ctx
			},
			want: revoke.OutcomeQueued, wantPending: 1, wantErrText: context.Canceled.Error(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, newQueue(t), nil)
			s.vault.setDown(tt.down)
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx(ctx)
			}
			rec := s.r.RevokeAll(ctx, "r_1", []approval.GrantRecord{tt.grant})
			if len(rec.Results) != 1 {
				t.Fatalf("RevokeAll() gave %d results, want 1", len(rec.Results))
			}
			res := rec.Results[0]
			if res.Outcome != tt.want || res.GrantID != "g1" {
				t.Errorf("Outcome = %q (grant %s), want %q (g1)", res.Outcome, res.GrantID, tt.want)
			}
			if tt.wantErrText == "" && res.Error != "" || !strings.Contains(res.Error, tt.wantErrText) {
				t.Errorf("Error = %q, want it to contain %q", res.Error, tt.wantErrText)
			}
			if got := s.vault.callsFor(tt.grant.Ref.ID) + s.jwt.callsFor(tt.grant.Ref.ID); got != tt.wantCalls {
				t.Errorf("issuer calls = %d, want %d", got, tt.wantCalls)
			}
			if got := s.pending(t); got != tt.wantPending {
				t.Errorf("Pending() = %d, want %d", got, tt.wantPending)
			}
		})
	}
}

// TestRevoker_RevokeAll_QueueDown checks that a queue failure never hides
// a credential: revoked if the issuer works, OutcomeFailed and an error log
// if it does not.
func TestRevoker_RevokeAll_QueueDown(t *testing.T) {
	t.Parallel()
	for _, down := range []bool{false, true} {
		t.Run(fmt.Sprintf("issuer down %v", down), func(t *testing.T) {
			t.Parallel()
			q := &recordingQueue{Queue: newQueue(t), enqueueErr: errors.New("disk full")}
			s := newSetup(t, q, nil)
			s.vault.setDown(down)
			res := s.r.RevokeAll(t.Context(), "r_1", []approval.GrantRecord{grant("g1", approval.KindVaultToken)}).Results[0]
			want := revoke.OutcomeRevoked
			if down {
				want = revoke.OutcomeFailed
			}
			if res.Outcome != want {
				t.Errorf("Outcome = %q, want %q", res.Outcome, want)
			}
			if down && (!strings.Contains(res.Error, "disk full") || !strings.Contains(res.Error, errDown.Error())) {
				t.Errorf("Error = %q, want both the issuer's and the queue's error", res.Error)
			}
			if logs := s.logs.String(); !strings.Contains(logs, "level=ERROR") {
				t.Errorf("logs = %q, want an error-level record of the queue failure", logs)
			}
		})
	}
}

func TestRevoker_RevokeAll_BoundedConcurrency(t *testing.T) {
	t.Parallel()
	s := newSetup(t, newQueue(t), func(c *revoke.Config) { c.Concurrency = 2 })
	s.vault.delay = 20 * time.Millisecond
	var grants []approval.GrantRecord
	for i := range 6 {
		grants = append(grants, grant(fmt.Sprintf("g%d", i), approval.KindVaultToken))
	}
	if rec := s.r.RevokeAll(t.Context(), "r_1", grants); !rec.Complete() {
		t.Fatalf("RevokeAll() = %+v, want all revoked", rec)
	}
	if s.vault.maxRunning > 2 {
		t.Errorf("%d issuer calls ran at once, want at most Concurrency = 2", s.vault.maxRunning)
	}
}

// TestRevoker_RunOnce_RetriesAfterOutage: revocations queued while the
// issuer is down finish once it is back, with one OnDone each.
func TestRevoker_RunOnce_RetriesAfterOutage(t *testing.T) {
	t.Parallel()
	s := newSetup(t, newQueue(t), nil)
	s.vault.setDown(true)
	s.jwt.setDown(true)
	grants := []approval.GrantRecord{grant("g1", approval.KindVaultToken), grant("g2", approval.KindJWT), grant("g3", approval.KindVaultToken)}
	if got := s.r.RevokeAll(t.Context(), "r_1", grants).Counts(); got[revoke.OutcomeQueued] != 3 {
		t.Fatalf("RevokeAll() counts = %v, want 3 queued", got)
	}
	if n := s.pending(t); n != 3 {
		t.Fatalf("Pending() = %d, want 3", n)
	}

	s.vault.setDown(false)
	s.jwt.setDown(false)
	s.clock.Advance(revoke.DefaultBaseBackoff + time.Nanosecond) // past every first backoff
	done, failed, err := s.r.RunOnce(t.Context())
	if done != 3 || failed != 0 || err != nil {
		t.Fatalf("RunOnce() = %d, %d, %v; want 3, 0, nil", done, failed, err)
	}
	if n := s.pending(t); n != 0 {
		t.Errorf("Pending() = %d after the retry, want 0", n)
	}
	want := map[string][]revoke.Outcome{}
	for _, g := range grants {
		want[revoke.ItemID(g.Ref)] = []revoke.Outcome{revoke.OutcomeRevoked}
		if !s.vault.isRevoked(g.Ref.ID) && !s.jwt.isRevoked(g.Ref.ID) {
			t.Errorf("%s not revoked", g.Ref.ID)
		}
	}
	if diff := cmp.Diff(want, s.log.done); diff != "" {
		t.Errorf("OnDone calls mismatch (-want +got):\n%s", diff)
	}
	if done, failed, err := s.r.RunOnce(t.Context()); done+failed != 0 || err != nil {
		t.Errorf("second RunOnce() = %d, %d, %v; want nothing to do", done, failed, err)
	}
}

// TestRevoker_RunOnce_Backoff checks that retry delays stay within the
// full-jitter bounds, which double per attempt up to MaxBackoff, and that
// alerts fire every AlertAfter attempts.
func TestRevoker_RunOnce_Backoff(t *testing.T) {
	t.Parallel()
	const (
		base     = time.Second
		maxDelay = 8 * time.Second
		rounds   = 12
	)
	q := &recordingQueue{Queue: newQueue(t)}
	s := newSetup(t, q, func(c *revoke.Config) {
		c.BaseBackoff, c.MaxBackoff, c.AlertAfter = base, maxDelay, 3
	})
	s.vault.setDown(true)
	s.r.RevokeAll(t.Context(), "r_1", []approval.GrantRecord{grant("g1", approval.KindVaultToken)})

	var delays []time.Duration
	for attempt := 1; attempt <= rounds; attempt++ {
		now := s.clock.Now()
		last := q.last()
		if last.attempts != attempt {
			t.Fatalf("reschedule %d: attempts = %d, want %d", attempt, last.attempts, attempt)
		}
		d := last.next.Sub(now)
		bound := min(maxDelay, base<<(attempt-1))
		if d < 0 || d > bound {
			t.Errorf("attempt %d: delay %v, want within [0, %v]", attempt, d, bound)
		}
		delays = append(delays, d)
		if attempt == rounds {
			break
		}
		s.clock.Set(last.next.Add(time.Millisecond))
		if done, failed, err := s.r.RunOnce(t.Context()); done != 0 || failed != 1 || err != nil {
			t.Fatalf("RunOnce() = %d, %d, %v; want 0, 1, nil", done, failed, err)
		}
	}
	distinct := map[time.Duration]bool{}
	for _, d := range delays[4:] { // all capped at maxDelay
		distinct[d] = true
	}
	if len(distinct) < 2 {
		t.Errorf("capped delays %v are all equal, want jitter", delays[4:])
	}
	var alerted []int
	for _, it := range s.log.alerts {
		alerted = append(alerted, it.Attempts)
		if it.LastError == "" {
			t.Errorf("alert for attempt %d has no LastError", it.Attempts)
		}
	}
	if diff := cmp.Diff([]int{3, 6, 9, 12}, alerted); diff != "" {
		t.Errorf("OnAlert attempts mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(s.logs.String(), "level=ERROR") {
		t.Errorf("no error-level log for a revocation that keeps failing")
	}
}

// TestRevoker_RunOnce_ExpiredWhileQueued: an item whose credential expired
// in the queue is finished without calling the issuer.
func TestRevoker_RunOnce_ExpiredWhileQueued(t *testing.T) {
	t.Parallel()
	s := newSetup(t, newQueue(t), nil)
	s.vault.setDown(true)
	g := grant("g1", approval.KindVaultToken)
	s.r.RevokeAll(t.Context(), "r_1", []approval.GrantRecord{g})
	calls := s.vault.total()

	s.clock.Set(g.Ref.Expires.Add(revoke.DefaultExpiryLeeway))
	if done, failed, err := s.r.RunOnce(t.Context()); done != 1 || failed != 0 || err != nil {
		t.Fatalf("RunOnce() = %d, %d, %v; want 1, 0, nil", done, failed, err)
	}
	if got := s.vault.total(); got != calls {
		t.Errorf("issuer called %d more times for an expired credential, want 0", got-calls)
	}
	if diff := cmp.Diff(map[string][]revoke.Outcome{revoke.ItemID(g.Ref): {revoke.OutcomeExpired}}, s.log.done); diff != "" {
		t.Errorf("OnDone calls mismatch (-want +got):\n%s", diff)
	}
	if n := s.pending(t); n != 0 {
		t.Errorf("Pending() = %d, want 0", n)
	}
}

// TestRevoker_QueueSurvivesRestart is reliability case T13: revocations
// queued by one broker are finished by the next one on the same file, and
// revoking again is harmless.
func TestRevoker_QueueSurvivesRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "writ.db")
	grants := []approval.GrantRecord{grant("g1", approval.KindVaultToken), grant("g2", approval.KindJWT)}

	storeA := openStore(t, path)
	a := newSetup(t, storeA.Revocations(), nil)
	a.vault.setDown(true)
	a.jwt.setDown(true)
	if got := a.r.RevokeAll(t.Context(), "r_1", grants).Counts(); got[revoke.OutcomeQueued] != 2 {
		t.Fatalf("RevokeAll() counts = %v, want 2 queued", got)
	}
	if err := storeA.Close(); err != nil { // the broker stops
		t.Fatalf("Close() err = %v", err)
	}

	storeB := openStore(t, path)
	b := newSetup(t, storeB.Revocations(), nil)
	if n := b.pending(t); n != 2 {
		t.Fatalf("Pending() after restart = %d, want 2", n)
	}
	b.clock.Advance(time.Minute)
	if done, failed, err := b.r.RunOnce(t.Context()); done != 2 || failed != 0 || err != nil {
		t.Fatalf("RunOnce() after restart = %d, %d, %v; want 2, 0, nil", done, failed, err)
	}
	if !b.vault.isRevoked("ref-g1") || !b.jwt.isRevoked("ref-g2") {
		t.Errorf("credentials not revoked after restart")
	}
	if rec := b.r.RevokeAll(t.Context(), "r_1", grants); !rec.Complete() {
		t.Errorf("revoking again = %+v, want all revoked (idempotent)", rec)
	}
	if n := b.pending(t); n != 0 {
		t.Errorf("Pending() = %d, want 0", n)
	}
}

// TestRevoker_RunOnce_Concurrent runs RunOnce from two goroutines over one
// queue: every item is revoked exactly once, never twice at the same time.
func TestRevoker_RunOnce_Concurrent(t *testing.T) {
	t.Parallel()
	const n = 30
	q := newQueue(t)
	s := newSetup(t, q, func(c *revoke.Config) { c.BatchSize = 4 })
	s.vault.delay = 2 * time.Millisecond
	for i := range n {
		g := grant(fmt.Sprintf("g%02d", i), approval.KindVaultToken)
		it := revoke.Item{ID: revoke.ItemID(g.Ref), Ref: g.Ref, RequestID: g.RequestID, GrantID: g.GrantID, NextAt: epoch, EnqueuedAt: epoch}
		if err := q.Enqueue(t.Context(), it); err != nil {
			t.Fatalf("Enqueue() err = %v", err)
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for range 2 {
		wg.Go(func() {
			for {
				done, failed, err := s.r.RunOnce(t.Context())
				if err != nil || failed != 0 {
					t.Errorf("RunOnce() = %d, %d, %v", done, failed, err)
					return
				}
				if done == 0 {
					return
				}
				mu.Lock()
				total += done
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if total != n {
		t.Errorf("RunOnce calls finished %d items in all, want %d", total, n)
	}
	for i := range n {
		if c := s.vault.callsFor(fmt.Sprintf("ref-g%02d", i)); c != 1 {
			t.Errorf("ref-g%02d revoked %d times, want 1", i, c)
		}
	}
	if s.vault.overlaps != 0 {
		t.Errorf("%d revocations overlapped another of the same credential", s.vault.overlaps)
	}
}

// TestRevoker_Run runs the loop in a synctest bubble: its ticker runs on
// the bubble's fake clock, so the test waits for no real time.
func TestRevoker_Run(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newSetup(t, newQueue(t), nil)
		s.vault.setDown(true)
		s.r.RevokeAll(t.Context(), "r_1", []approval.GrantRecord{grant("g1", approval.KindVaultToken)})
		s.vault.setDown(false)
		s.clock.Advance(time.Minute)

		ctx, cancel := context.WithCancel(t.Context())
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			s.r.Run(ctx, 5*time.Millisecond)
		}()
		// Each fake-clock sleep lets Run tick once; a handful suffice.
		for i := 0; s.pending(t) != 0; i++ {
			if i == 100 {
				t.Fatalf("Run() did not finish the queued revocation in 100 ticks")
			}
			time.Sleep(5 * time.Millisecond) // bubble time: returns once every goroutine is blocked, no wall-clock wait
		}
		cancel()
		<-stopped // a Run that ignored cancellation would deadlock the bubble: synctest reports it
		if !s.vault.isRevoked("ref-g1") {
			t.Errorf("ref-g1 not revoked")
		}
	})
}

// TestRevoker_PlanThenAttempt: Plan decides without touching the queue or
// the issuers, so a caller can queue the items in its own transaction;
// Attempt then revokes what was queued and takes it off the queue, or
// leaves it queued with a backoff.
func TestRevoker_PlanThenAttempt(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	s := newSetup(t, q, nil)
	expired := grant("g0", approval.KindJWT)
	expired.Ref.Expires = epoch.Add(-time.Hour)
	noRef := grant("g3", approval.KindJWT)
	noRef.Ref.ID = ""
	grants := []approval.GrantRecord{expired, grant("g1", approval.KindVaultToken), grant("g2", approval.KindJWT), noRef}

	p := s.r.Plan("r_1", grants)
	gotOutcomes := func(rec revoke.Receipt) []revoke.Outcome {
		var out []revoke.Outcome
		for _, res := range rec.Results {
			out = append(out, res.Outcome)
		}
		return out
	}
	if diff := cmp.Diff([]revoke.Outcome{revoke.OutcomeExpired, revoke.OutcomeQueued, revoke.OutcomeQueued, revoke.OutcomeFailed}, gotOutcomes(p.Receipt)); diff != "" {
		t.Errorf("Plan() outcomes (-want +got):\n%s", diff)
	}
	if len(p.Items) != 2 || p.Items[0].ID != "vault_token:ref-g1" || !p.Items[0].NextAt.After(epoch) {
		t.Errorf("Plan() items = %+v, want g1 and g2 claimed past now", p.Items)
	}
	if n := s.pending(t); n != 0 || s.vault.total()+s.jwt.total() != 0 {
		t.Fatalf("Plan() queued %d items and called issuers %d times, want neither", n, s.vault.total()+s.jwt.total())
	}
	for _, it := range p.Items {
		if err := q.Enqueue(t.Context(), it); err != nil {
			t.Fatal(err)
		}
	}
	s.vault.setDown(true)
	rec := s.r.Attempt(t.Context(), p)
	if diff := cmp.Diff([]revoke.Outcome{revoke.OutcomeExpired, revoke.OutcomeQueued, revoke.OutcomeRevoked, revoke.OutcomeFailed}, gotOutcomes(rec)); diff != "" {
		t.Errorf("Attempt() outcomes (-want +got):\n%s", diff)
	}
	if n := s.pending(t); n != 1 {
		t.Errorf("Pending() after Attempt = %d, want 1 (the vault token, still down)", n)
	}
}
