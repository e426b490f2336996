package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestBuckets_BurstThenRefill(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := newBuckets("grant", 2, 3, 100, clk.Now)
	for i := range 3 {
		if !b.allow("a") {
			t.Fatalf("call %d within the burst refused", i+1)
		}
	}
	if b.allow("a") {
		t.Fatal("call past the burst allowed")
	}
	if !b.allow("b") {
		t.Fatal("another principal shares a's bucket")
	}
	clk.Advance(500 * time.Millisecond) // one token at 2/s
	if !b.allow("a") || b.allow("a") {
		t.Fatal("after 0.5s at 2/s, want exactly one more call")
	}
}

func TestBuckets_ZeroRateAllowsAll(t *testing.T) {
	t.Parallel()
	b := newBuckets("grant", 0, 0, 10, time.Now)
	for range 1000 {
		if !b.allow("a") {
			t.Fatal("rate 0 refused a call")
		}
	}
	if b.len() != 0 {
		t.Errorf("rate 0 keeps %d buckets, want none", b.len())
	}
}

// Limiter state is bounded: idle principals are forgotten (a full bucket is
// the same as a new one), and never more than the cap are kept.
func TestBuckets_BoundedMemory(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := newBuckets("grant", 10, 10, 50, clk.Now) // refills in 1s
	for i := range 1000 {
		b.allow(fmt.Sprintf("p%d", i))
		if b.len() > 50 {
			t.Fatalf("%d buckets kept, cap 50", b.len())
		}
	}
	clk.Advance(2 * time.Second)
	b.allow("late")
	if n := b.len(); n != 1 {
		t.Errorf("after every principal went idle past a refill, %d buckets kept, want 1", n)
	}
	// A principal that emptied its bucket keeps it across a sweep.
	for range 10 {
		b.allow("busy")
	}
	clk.Advance(600 * time.Millisecond)
	for range 20 {
		b.allow(fmt.Sprintf("q%d", len(b.m)))
	}
	allowed := 0
	for range 10 {
		if b.allow("busy") {
			allowed++
		}
	}
	if allowed != 6 {
		t.Errorf("busy principal allowed %d calls 0.6s after emptying its bucket at 10/s, want 6 (not a fresh bucket)", allowed)
	}
}

// The hub wakes every subscriber of a request without blocking, coalesces
// wake-ups, and forgets subscriptions that end.
func TestHub(t *testing.T) {
	t.Parallel()
	h := NewHub()
	a, stopA := h.Subscribe("r1")
	b, stopB := h.Subscribe("r1")
	c, stopC := h.Subscribe("r2")
	h.Changed("r1")
	h.Changed("r1") // coalesced, never blocks
	for name, ch := range map[string]<-chan struct{}{"a": a, "b": b} {
		select {
		case <-ch:
		default:
			t.Errorf("subscriber %s of r1 not woken", name)
		}
	}
	select {
	case <-c:
		t.Error("subscriber of r2 woken by a change to r1")
	default:
	}
	stopA()
	stopA()
	stopB()
	stopC()
	if n := h.subscribers(); n != 0 {
		t.Errorf("%d subscriptions left after all ended", n)
	}
}

func TestLimiters_Message(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiters(Limits{GrantRate: 1, GrantBurst: 1}, clk.Now)
	p := stringer("spiffe://example.org/a")
	if err := l.allow(limitGrant, p, nil); err != nil {
		t.Fatal(err)
	}
	err := l.allow(limitGrant, p, nil)
	if !errors.Is(err, errLimit) || !strings.Contains(err.Error(), "limits.grants") {
		t.Errorf("second grant = %v, want errLimit naming limits.grants", err)
	}
	if err := l.allow(limitSubmit, p, nil); err != nil {
		t.Errorf("submit limit 0 refused: %v", err)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestCounter_Caps(t *testing.T) {
	t.Parallel()
	c := &counter{n: map[string]int{}}
	keys, caps := []string{"p", "conn1"}, []int{3, 2}
	r1, _, ok1 := c.acquire(keys, caps)
	_, _, ok2 := c.acquire(keys, caps)
	_, full, ok3 := c.acquire(keys, caps)
	if !ok1 || !ok2 || ok3 || full != 1 {
		t.Fatalf("third on one connection: ok %v full %d; want refused by the connection cap", ok3, full)
	}
	if _, _, ok := c.acquire([]string{"p", "conn2"}, caps); !ok {
		t.Fatal("another connection refused below the principal cap")
	}
	if _, full, ok := c.acquire([]string{"p", "conn3"}, caps); ok || full != 0 {
		t.Fatalf("fourth for the principal: ok %v full %d; want refused by the principal cap", ok, full)
	}
	r1()
	r1() // idempotent
	if _, _, ok := c.acquire([]string{"p", "conn3"}, caps); !ok {
		t.Fatal("slot not freed by release")
	}
}

// Rejected credentials are logged at warn level, a few lines per second at
// most, with the attacker's text quoted and cut, and the dropped lines
// counted.
func TestRejectLog_RateLimitedAndQuoted(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := newRejectLog(slog.New(slog.NewTextHandler(&buf, nil)), clk.Now)
	evil := errors.New("bad sub \x1b[2J\x1b[31mAPPROVED\u202e " + strings.Repeat("A", 10_000))
	for range 100 {
		r.log(context.Background(), "rejected ID token", "/m", evil)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("100 rejections logged %d lines, want the burst of 5", len(lines))
	}
	clk.Advance(time.Second)
	r.log(context.Background(), "rejected ID token", "/m", evil)
	lines = strings.Split(strings.TrimSpace(buf.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "suppressed_since_last=95") {
		t.Errorf("line after the pause = %s, want suppressed_since_last=95", last)
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\x1b\u202e") || len(l) > 600 || !strings.Contains(l, "level=WARN") {
			t.Errorf("log line not escaped, cut or at warn: %q", l)
		}
	}
}
