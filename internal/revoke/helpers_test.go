package revoke_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// epoch is the tests' pinned clock origin.
var epoch = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// errDown is what a fake issuer returns while its backend is down.
var errDown = errors.New("issuer backend unavailable")

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: epoch} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// fakeIssuer records revocations. Revoking twice succeeds, as the Issuer
// contract demands.
type fakeIssuer struct {
	mu          sync.Mutex
	down        bool
	delay       time.Duration
	calls       map[string]int // by ref ID
	revoked     map[string]bool
	inflight    map[string]int
	overlaps    int // calls that started while another for the same ref ran
	running     int
	maxRunning  int
	totalCalled int
}

func newIssuer() *fakeIssuer {
	return &fakeIssuer{calls: map[string]int{}, revoked: map[string]bool{}, inflight: map[string]int{}}
}

func (f *fakeIssuer) Revoke(ctx context.Context, ref approval.CredentialRef) error {
	f.mu.Lock()
	f.calls[ref.ID]++
	f.totalCalled++
	if f.inflight[ref.ID] > 0 {
		f.overlaps++
	}
	f.inflight[ref.ID]++
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	down, delay := f.down, f.delay
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight[ref.ID]--
		f.running--
		f.mu.Unlock()
	}()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if down {
		return errDown
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.revoked[ref.ID] = true
	f.mu.Unlock()
	return nil
}

func (f *fakeIssuer) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeIssuer) callsFor(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func (f *fakeIssuer) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.totalCalled
}

func (f *fakeIssuer) isRevoked(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revoked[id]
}

// openStore opens a bbolt store at path and closes it when the test ends.
func openStore(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatalf("boltstore.Open() err = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() err = %v", err)
		}
	})
	return s
}

// newQueue returns a fresh bbolt revocation queue.
func newQueue(t *testing.T) *boltstore.RevocationQueue {
	t.Helper()
	return openStore(t, filepath.Join(t.TempDir(), "writ.db")).Revocations()
}

// doneLog records OnDone and OnAlert calls.
type doneLog struct {
	mu     sync.Mutex
	done   map[string][]revoke.Outcome
	alerts []revoke.Item
}

func newDoneLog() *doneLog { return &doneLog{done: map[string][]revoke.Outcome{}} }

func (d *doneLog) onDone(_ context.Context, it revoke.Item, o revoke.Outcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done[it.ID] = append(d.done[it.ID], o)
}

func (d *doneLog) onAlert(_ context.Context, it revoke.Item) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.alerts = append(d.alerts, it)
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// setup is a Revoker over a queue with a vault and a JWT fake issuer.
type setup struct {
	r     *revoke.Revoker
	q     revoke.Queue
	clock *clock
	vault *fakeIssuer
	jwt   *fakeIssuer
	log   *doneLog
	logs  *logBuffer
}

// newSetup builds a Revoker over q; edit may change the config.
func newSetup(t *testing.T, q revoke.Queue, edit func(*revoke.Config)) *setup {
	t.Helper()
	s := &setup{q: q, clock: newClock(), vault: newIssuer(), jwt: newIssuer(), log: newDoneLog(), logs: &logBuffer{}}
	cfg := revoke.Config{
		Issuers: map[approval.CredentialKind]revoke.Issuer{
			approval.KindVaultToken: s.vault,
			approval.KindJWT:        s.jwt,
		},
		Queue:          q,
		Now:            s.clock.Now,
		Logger:         slog.New(slog.NewTextHandler(s.logs, nil)),
		AttemptTimeout: time.Second,
		OnDone:         s.log.onDone,
		OnAlert:        s.log.onAlert,
	}
	if edit != nil {
		edit(&cfg)
	}
	r, err := revoke.New(cfg)
	if err != nil {
		t.Fatalf("revoke.New() err = %v", err)
	}
	s.r = r
	return s
}

func (s *setup) pending(t *testing.T) int {
	t.Helper()
	n, err := s.q.Pending(t.Context())
	if err != nil {
		t.Fatalf("Pending() err = %v", err)
	}
	return n
}

// grant returns a grant of r_1 whose credential expires an hour after
// epoch.
func grant(id string, kind approval.CredentialKind) approval.GrantRecord {
	return approval.GrantRecord{
		GrantID:   id,
		RequestID: "r_1",
		Ref:       approval.CredentialRef{Kind: kind, ID: "ref-" + id, Expires: epoch.Add(time.Hour)},
		IssuedAt:  epoch.Add(-time.Minute),
	}
}

// recordingQueue wraps a Queue and records Reschedule calls.
type recordingQueue struct {
	revoke.Queue
	mu          sync.Mutex
	reschedules []reschedule
	enqueueErr  error
}

type reschedule struct {
	attempts int
	next     time.Time
}

func (q *recordingQueue) Enqueue(ctx context.Context, it revoke.Item) error {
	if q.enqueueErr != nil {
		return q.enqueueErr
	}
	return q.Queue.Enqueue(ctx, it)
}

func (q *recordingQueue) Reschedule(ctx context.Context, id string, attempts int, next time.Time, lastErr string) error {
	q.mu.Lock()
	q.reschedules = append(q.reschedules, reschedule{attempts, next})
	q.mu.Unlock()
	return q.Queue.Reschedule(ctx, id, attempts, next, lastErr)
}

func (q *recordingQueue) last() reschedule {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.reschedules[len(q.reschedules)-1]
}
