package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/writ-dev/writ/internal/audit"
)

// memRecord is one stored record of a memStore.
type memRecord struct {
	key uint64
	raw []byte
}

// memStore is an in-memory audit.Store. ScanRecords yields recs in slice
// order, so tests can build ledgers that no real store would hold (duplicate
// or unordered keys).
type memStore struct {
	mu      sync.Mutex
	recs    []memRecord
	scanErr error // returned by ScanRecords after yielding every record
}

var _ audit.Store = (*memStore)(nil)

func (m *memStore) AppendEntry(ctx context.Context, build func(head audit.Entry, ok bool) (audit.Entry, error)) (audit.Entry, error) {
	if err := ctx.Err(); err != nil {
		return audit.Entry{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var head audit.Entry
	ok := len(m.recs) > 0
	if ok {
		var err error
		if head, err = audit.Decode(m.recs[len(m.recs)-1].raw); err != nil {
			return audit.Entry{}, err
		}
	}
	next, err := build(head, ok)
	if err != nil {
		return audit.Entry{}, err
	}
	if err := audit.CheckNext(head, ok, next); err != nil {
		return audit.Entry{}, err
	}
	raw, err := audit.Encode(next)
	if err != nil {
		return audit.Entry{}, err
	}
	m.recs = append(m.recs, memRecord{key: next.Seq, raw: raw})
	return next, nil
}

func (m *memStore) ScanRecords(ctx context.Context, fn func(seq uint64, raw []byte) error) error {
	m.mu.Lock()
	recs := append([]memRecord(nil), m.recs...)
	m.mu.Unlock()
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r.key, bytes.Clone(r.raw)); err != nil {
			return err
		}
	}
	return m.scanErr
}

// headStore is a memStore that also implements audit.HeadReader.
type headStore struct {
	memStore
	heads int
}

func (h *headStore) Head(ctx context.Context) (audit.Entry, bool, error) {
	h.heads++
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recs) == 0 {
		return audit.Entry{}, false, nil
	}
	e, err := audit.Decode(h.recs[len(h.recs)-1].raw)
	return e, err == nil, err
}

// failStore fails every append.
type failStore struct{ memStore }

var errStoreDown = errors.New("store down")

func (f *failStore) AppendEntry(context.Context, func(audit.Entry, bool) (audit.Entry, error)) (audit.Entry, error) {
	return audit.Entry{}, errStoreDown
}

// epoch is the tests' pinned clock origin.
var epoch = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// stepClock returns a clock that starts at epoch and advances by step on
// each reading.
func stepClock(step time.Duration) func() time.Time {
	var mu sync.Mutex
	t := epoch
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now := t
		t = t.Add(step)
		return now
	}
}

// sampleEvents exercises every Event field, non-ASCII and HTML characters,
// and sorted Details keys.
func sampleEvents() []audit.Event {
	return []audit.Event{
		{
			Action:         "grant",
			Actor:          "spiffe://example.org/ns/prod/sa/api",
			Subject:        "spiffe://example.org/ns/prod/sa/api",
			Entitlement:    "db-readonly",
			Rule:           "auto-prod-readers",
			Outcome:        "allowed",
			Reason:         "eligible & condition <true>",
			GrantID:        "g-0001",
			TTL:            15 * time.Minute,
			CredentialKind: "vault_token",
			CredentialRef:  "accessor-7f3a",
			Expires:        epoch.Add(15 * time.Minute),
			Details:        map[string]string{"zone": "eu-west-1", "request_id": "r-1", "émoji": "✓"},
		},
		{
			Action:      "deny",
			Actor:       "oidc:https://idp.example.org#alice",
			Subject:     "spiffe://example.org/ns/dev/sa/batch",
			Entitlement: "db-admin",
			Outcome:     "denied",
			Reason:      "principal is not eligible",
		},
		{
			Action:         "revoke",
			Actor:          "oidc:https://idp.example.org#bob",
			Subject:        "spiffe://example.org/ns/prod/sa/api",
			Entitlement:    "db-readonly",
			GrantID:        "g-0001",
			CredentialKind: "vault_token",
			CredentialRef:  "accessor-7f3a",
			Reason:         "incident \"INC-42\"\n",
			Expires:        time.Date(2030, 1, 1, 13, 15, 0, 500, time.FixedZone("CET", 3600)),
		},
	}
}

// newLog returns a Log over a fresh memStore with a pinned clock.
func newLog(t *testing.T) (*audit.Log, *memStore) {
	t.Helper()
	s := &memStore{}
	l, err := audit.New(audit.Config{Store: s, Now: stepClock(time.Second)})
	if err != nil {
		t.Fatalf("audit.New() err = %v", err)
	}
	return l, s
}

// newChain returns a memStore holding a valid chain of n records.
func newChain(t *testing.T, n int) *memStore {
	t.Helper()
	l, s := newLog(t)
	evs := sampleEvents()
	for i := range n {
		ev := evs[i%len(evs)]
		if i >= len(evs) {
			ev.GrantID = fmt.Sprintf("%s-%d", ev.GrantID, i)
		}
		if _, err := l.Append(t.Context(), ev); err != nil {
			t.Fatalf("Append(#%d) err = %v", i+1, err)
		}
	}
	return s
}
