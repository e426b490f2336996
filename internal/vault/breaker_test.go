package vault

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// fakeClock is a settable clock for breaker tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// step is one event in a breaker scenario: wait, then either ask allow
// (wantAllow) or record an outcome.
type step struct {
	wait      time.Duration
	record    error         // recorded if set, or if ok is true
	ok        bool          // record a success
	wantAllow *bool         // check allow()
	wantState *breakerState // check the state after the step
}

var (
	closed     = breakerClosed
	open       = breakerOpen
	halfOpen   = breakerHalfOpen
	yes        = true
	no         = false
	errUnavail = fmt.Errorf("read: %w", ErrUnavailable)
	errDenial  = fmt.Errorf("read: %w", ErrDenied)
)

func TestBreaker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
	}{
		{"stays closed below the threshold", []step{
			{record: errUnavail, wantState: &closed},
			{record: errUnavail, wantState: &closed},
			{wantAllow: &yes, wantState: &closed},
		}},
		{"opens after consecutive failures and fails fast", []step{
			{record: errUnavail}, {record: errUnavail}, {record: errUnavail, wantState: &open},
			{wantAllow: &no, wantState: &open},
			{wait: 9 * time.Second, wantAllow: &no, wantState: &open},
		}},
		{"a success resets the count", []step{
			{record: errUnavail}, {record: errUnavail}, {ok: true},
			{record: errUnavail}, {record: errUnavail, wantState: &closed},
		}},
		{"a denial proves vault answers", []step{
			{record: errUnavail}, {record: errUnavail}, {record: errDenial},
			{record: errUnavail}, {record: errUnavail, wantState: &closed},
		}},
		{"a cancellation counts for nothing", []step{
			{record: errUnavail}, {record: errUnavail}, {record: context.Canceled},
			{record: errUnavail, wantState: &open},
		}},
		{"after the cooldown exactly one probe goes through", []step{
			{record: errUnavail}, {record: errUnavail}, {record: errUnavail},
			{wait: 15 * time.Second, wantAllow: &yes, wantState: &halfOpen},
			{wantAllow: &no, wantState: &halfOpen},
		}},
		{"a successful probe closes it", []step{
			{record: errUnavail}, {record: errUnavail}, {record: errUnavail},
			{wait: 15 * time.Second, wantAllow: &yes},
			{ok: true, wantState: &closed},
			{wantAllow: &yes},
		}},
		{"a failed probe reopens it for another cooldown", []step{
			{record: errUnavail}, {record: errUnavail}, {record: errUnavail},
			{wait: 15 * time.Second, wantAllow: &yes},
			{record: errUnavail, wantState: &open},
			{wait: 9 * time.Second, wantAllow: &no},
			{wait: 6 * time.Second, wantAllow: &yes, wantState: &halfOpen},
		}},
		{"a canceled probe lets the next caller probe", []step{
			{record: errUnavail}, {record: errUnavail}, {record: errUnavail},
			{wait: 15 * time.Second, wantAllow: &yes},
			{record: context.Canceled, wantState: &open},
			{wantAllow: &yes, wantState: &halfOpen},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
			b := newBreaker(BreakerConfig{Failures: 3, Cooldown: 10 * time.Second}, clock.now)
			b.jitter = func(d time.Duration) time.Duration { return d / 4 } // cooldown 12.5s
			for i, s := range tt.steps {
				clock.advance(s.wait)
				switch {
				case s.wantAllow != nil:
					err := b.allow(t.Context())
					if got := err == nil; got != *s.wantAllow {
						t.Fatalf("step %d: allow() err = %v, want allowed %v", i, err, *s.wantAllow)
					}
					if err != nil && (!errors.Is(err, ErrCircuitOpen) || !errors.Is(err, ErrUnavailable)) {
						t.Errorf("step %d: allow() err = %v, want %v and %v", i, err, ErrCircuitOpen, ErrUnavailable)
					}
				case s.ok:
					b.record(t.Context(), nil)
				default:
					b.record(t.Context(), s.record)
				}
				if s.wantState != nil && b.state != *s.wantState {
					t.Errorf("step %d: state = %s, want %s", i, b.state, *s.wantState)
				}
			}
		})
	}
}

func TestBreaker_Disabled(t *testing.T) {
	t.Parallel()
	b := newBreaker(BreakerConfig{Failures: -1}, time.Now)
	for range 100 {
		b.record(t.Context(), errUnavail)
	}
	if err := b.allow(t.Context()); err != nil {
		t.Errorf("disabled breaker: allow() err = %v, want nil", err)
	}
	if b.isOpen() {
		t.Errorf("disabled breaker: isOpen() = true")
	}
}
