package vault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Breaker defaults, used when BreakerConfig fields are zero.
const (
	// DefaultBreakerFailures is how many consecutive ErrUnavailable results
	// open the breaker.
	DefaultBreakerFailures = 5
	// DefaultBreakerCooldown is how long the breaker stays open before it lets
	// one probe through. The actual wait is jittered between the cooldown and
	// 1.5 times it, so replicas do not probe in lockstep.
	DefaultBreakerCooldown = 5 * time.Second
)

// BreakerConfig tunes the circuit breaker a Client puts in front of Vault.
// The zero value uses the defaults.
type BreakerConfig struct {
	// Failures is how many consecutive ErrUnavailable results open the
	// breaker. Zero means DefaultBreakerFailures; a negative value disables
	// the breaker.
	Failures int
	// Cooldown is the minimum time the breaker stays open. Zero means
	// DefaultBreakerCooldown.
	Cooldown time.Duration
}

// breakerState is where the breaker is in its cycle.
type breakerState int

const (
	breakerClosed   breakerState = iota // requests flow; failures are counted
	breakerOpen                         // requests fail fast until reopenAt
	breakerHalfOpen                     // one probe is in flight; others fail fast
)

// String names the state for logs.
func (s breakerState) String() string {
	switch s {
	case breakerClosed:
		return "closed"
	case breakerOpen:
		return "open"
	default:
		return "half-open"
	}
}

// breaker is a consecutive-failure circuit breaker. It is closed while Vault
// answers; after the configured number of consecutive ErrUnavailable results
// it opens and every call fails fast without touching Vault; after a jittered
// cooldown it lets exactly one probe through (half-open), whose result closes
// or reopens it. It is safe for concurrent use.
type breaker struct {
	failures int
	cooldown time.Duration
	now      func() time.Time
	// jitter returns a random duration in [0, d).
	jitter func(d time.Duration) time.Duration
	// onChange, if set, is called (without the lock) on every state change,
	// with the context of the request that caused it.
	onChange func(ctx context.Context, from, to breakerState)

	mu       sync.Mutex
	state    breakerState
	count    int       // consecutive failures while closed
	reopenAt time.Time // when an open breaker lets a probe through
}

// newBreaker returns a closed breaker for cfg, or nil if cfg disables it.
func newBreaker(cfg BreakerConfig, now func() time.Time) *breaker {
	if cfg.Failures < 0 {
		return nil
	}
	if cfg.Failures == 0 {
		cfg.Failures = DefaultBreakerFailures
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultBreakerCooldown
	}
	return &breaker{
		failures: cfg.Failures,
		cooldown: cfg.Cooldown,
		now:      now,
		jitter: func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return rand.N(d)
		},
	}
}

// allow reports whether a request may go to Vault. It returns an error
// wrapping ErrCircuitOpen and ErrUnavailable while the breaker is open, or
// half-open with a probe already in flight. A nil breaker allows everything.
func (b *breaker) allow(ctx context.Context) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	from := b.state
	switch b.state {
	case breakerClosed:
		b.mu.Unlock()
		return nil
	case breakerOpen:
		if now := b.now(); now.Before(b.reopenAt) {
			wait := b.reopenAt.Sub(now)
			b.mu.Unlock()
			return fmt.Errorf("vault calls suspended for another %s after repeated failures: %w: %w",
				wait.Round(time.Millisecond), ErrCircuitOpen, ErrUnavailable)
		}
		b.state = breakerHalfOpen // this caller is the probe
		b.mu.Unlock()
		b.changed(ctx, from, breakerHalfOpen)
		return nil
	default:
		b.mu.Unlock()
		return fmt.Errorf("vault calls suspended while a probe request is in flight: %w: %w", ErrCircuitOpen, ErrUnavailable)
	}
}

// record feeds the outcome of an allowed request into the breaker. An error
// wrapping ErrUnavailable is a failure. Other errors (a denial, a missing
// role) prove Vault is answering and count as successes, except a
// cancellation by the caller, which proves nothing: a half-open breaker then
// lets the next caller probe.
func (b *breaker) record(ctx context.Context, err error) {
	if b == nil {
		return
	}
	failed := errors.Is(err, ErrUnavailable)
	unknown := !failed && errors.Is(err, context.Canceled)
	b.mu.Lock()
	from := b.state
	switch {
	case unknown:
		if b.state == breakerHalfOpen {
			b.state, b.reopenAt = breakerOpen, b.now()
		}
	case !failed:
		b.state, b.count = breakerClosed, 0
	case b.state == breakerHalfOpen:
		b.open()
	case b.state == breakerClosed:
		b.count++
		if b.count >= b.failures {
			b.open()
		}
	default:
		// Already open: a request allowed before the breaker opened has
		// failed too. Keep the current cooldown.
	}
	to := b.state
	b.mu.Unlock()
	if from != to {
		b.changed(ctx, from, to)
	}
}

// open moves to the open state with a fresh jittered cooldown. The caller
// holds b.mu.
func (b *breaker) open() {
	b.state, b.count = breakerOpen, 0
	b.reopenAt = b.now().Add(b.cooldown + b.jitter(b.cooldown/2))
}

// isOpen reports whether calls currently fail fast.
func (b *breaker) isOpen() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == breakerOpen && b.now().Before(b.reopenAt)
}

// changed reports a state change to onChange.
func (b *breaker) changed(ctx context.Context, from, to breakerState) {
	if b.onChange != nil {
		b.onChange(ctx, from, to)
	}
}
