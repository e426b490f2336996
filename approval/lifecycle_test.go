package approval

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// requestIn returns rita's request under a 1-of-N dba stage in the given
// state: approved requests were approved by alice at now+1h for 2h.
func requestIn(t *testing.T, state State) Request {
	t.Helper()
	e := approverEntitlement(oneDBA...)
	r := pendingRequest(t, e)
	switch state {
	case StatePending:
	case StateApproved:
		if _, err := ApplyReview(&r, e, approve(alice, "dba"), now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	case StateDenied:
		if _, err := ApplyReview(&r, e, deny(alice, "dba"), now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	case StateCancelled:
		if err := Cancel(&r, rita, "", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	case StateRevoked:
		r = requestIn(t, StateApproved)
		if err := Revoke(&r, alice, "done", now.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	case StateExpired:
		if !Expire(&r, now.Add(48*time.Hour)) {
			t.Fatal("Expire() = false")
		}
	}
	if r.State != state {
		t.Fatalf("set up a %s request, got %s", state, r.State)
	}
	return r
}

func TestCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		state   State
		by      Principal
		note    string
		at      time.Duration
		wantErr error
	}{
		{name: "requester cancels a pending request", state: StatePending, by: rita, note: "no longer needed", at: time.Hour},
		{name: "someone else cannot cancel", state: StatePending, by: alice, at: time.Hour, wantErr: ErrNotRequester},
		{name: "the beneficiary cannot cancel a person's request", state: StatePending, by: workload, at: time.Hour, wantErr: ErrNotRequester},
		{name: "an approved request is revoked, not cancelled", state: StateApproved, by: rita, at: 2 * time.Hour, wantErr: ErrResolved},
		{name: "a denied request stays denied", state: StateDenied, by: rita, at: 2 * time.Hour, wantErr: ErrResolved},
		{name: "after the pending deadline", state: StatePending, by: rita, at: 24 * time.Hour, wantErr: ErrResolved},
		{name: "note over the limit", state: StatePending, by: rita, note: strings.Repeat("n", DefaultMaxReasonLen+1), at: time.Hour, wantErr: ErrInvalid},
		{name: "no canceller", state: StatePending, at: time.Hour, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := requestIn(t, tt.state)
			orig := cloneRequest(r)
			at := now.Add(tt.at)
			err := Cancel(&r, tt.by, tt.note, at)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Cancel() err = %v, want %v", err, tt.wantErr)
				}
				if diff := cmp.Diff(orig, r); diff != "" {
					t.Errorf("Cancel() changed the request on error (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Cancel() err = %v", err)
			}
			if r.State != StateCancelled || !r.ResolvedAt.Equal(at) || r.ResolvedBy != tt.by || r.ResolutionNote != tt.note {
				t.Errorf("Cancel() = %+v, want cancelled by %s at %v", r, tt.by, at)
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		state   State
		reason  string
		at      time.Duration // the window is now+1h to now+3h
		wantErr error
	}{
		{name: "an approval is revoked", state: StateApproved, reason: "incident over", at: 2 * time.Hour},
		{name: "a pending request is denied, not revoked", state: StatePending, at: time.Hour, wantErr: ErrResolved},
		{name: "a revoked approval stays revoked", state: StateRevoked, at: 2 * time.Hour, wantErr: ErrResolved},
		{name: "an expired request stays expired", state: StateExpired, at: 50 * time.Hour, wantErr: ErrResolved},
		{name: "an approval whose window ended has expired", state: StateApproved, at: 3 * time.Hour, wantErr: ErrResolved},
		{name: "reason with a control character", state: StateApproved, reason: "x\x07", at: 2 * time.Hour, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := requestIn(t, tt.state)
			orig := cloneRequest(r)
			at := now.Add(tt.at)
			err := Revoke(&r, carol, tt.reason, at)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Revoke() err = %v, want %v", err, tt.wantErr)
				}
				if diff := cmp.Diff(orig, r); diff != "" {
					t.Errorf("Revoke() changed the request on error (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Revoke() err = %v", err)
			}
			if r.State != StateRevoked || !r.ResolvedAt.Equal(at) || r.ResolvedBy != carol || r.ResolutionNote != tt.reason {
				t.Errorf("Revoke() = %+v, want revoked by %s at %v", r, carol, at)
			}
		})
	}
}

func TestExpire(t *testing.T) {
	t.Parallel()
	pendingDeadline := now.Add(24 * time.Hour)
	windowEnd := now.Add(3 * time.Hour)
	tests := []struct {
		name         string
		state        State
		at           time.Time
		wantChanged  bool
		wantResolved time.Time // when changed
	}{
		{name: "pending before its deadline stays pending", state: StatePending, at: pendingDeadline.Add(-time.Nanosecond)},
		{name: "pending at its deadline expires then", state: StatePending, at: pendingDeadline, wantChanged: true, wantResolved: pendingDeadline},
		{name: "a late sweep records the deadline, not the sweep time", state: StatePending, at: pendingDeadline.Add(72 * time.Hour), wantChanged: true, wantResolved: pendingDeadline},
		{name: "approved inside its window stays approved", state: StateApproved, at: windowEnd.Add(-time.Millisecond)},
		{name: "approved at its window end expires then", state: StateApproved, at: windowEnd, wantChanged: true, wantResolved: windowEnd},
		{name: "approved past its window expires at the window end", state: StateApproved, at: windowEnd.Add(time.Hour), wantChanged: true, wantResolved: windowEnd},
		{name: "denied never changes", state: StateDenied, at: now.Add(1000 * time.Hour)},
		{name: "cancelled never changes", state: StateCancelled, at: now.Add(1000 * time.Hour)},
		{name: "revoked never changes", state: StateRevoked, at: now.Add(1000 * time.Hour)},
		{name: "expired never changes again", state: StateExpired, at: now.Add(1000 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := requestIn(t, tt.state)
			orig := cloneRequest(r)
			changed := Expire(&r, tt.at)
			if changed != tt.wantChanged {
				t.Fatalf("Expire() = %v, want %v", changed, tt.wantChanged)
			}
			if !changed {
				if diff := cmp.Diff(orig, r); diff != "" {
					t.Errorf("Expire() changed the request without reporting it (-before +after):\n%s", diff)
				}
				return
			}
			if r.State != StateExpired || !r.ResolvedAt.Equal(tt.wantResolved) || r.ResolvedBy != "" {
				t.Errorf("Expire() = %+v, want expired at %v", r, tt.wantResolved)
			}
		})
	}
	if Expire(nil, now) {
		t.Error("Expire(nil) = true")
	}
}
