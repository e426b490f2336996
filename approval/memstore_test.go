package approval

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// memStore is an in-memory Store for Service tests. UpdateRequest is
// optimistic like the real backends: it calls fn outside the lock on a copy
// and retries when another update won meanwhile, so fn really is called
// more than once under contention.
type memStore struct {
	mu        sync.Mutex
	reqs      map[string]Request
	order     map[string]int // creation order, for newest first
	grants    []GrantRecord
	conflicts atomic.Int64 // lost compare-and-swaps, retried

	// Break-glass uses (memstore_breakglass_test.go).
	bgs     map[string]BreakGlass
	bgOrder map[string]int
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{reqs: map[string]Request{}, order: map[string]int{}, bgs: map[string]BreakGlass{}, bgOrder: map[string]int{}}
}

func clone(r Request) Request {
	r.Reviews = slices.Clone(r.Reviews)
	for i := range r.Reviews {
		r.Reviews[i].Groups = slices.Clone(r.Reviews[i].Groups)
	}
	return r
}

func (s *memStore) CreateRequest(ctx context.Context, r Request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.reqs[r.ID]; ok {
		return fmt.Errorf("create request %s: %w", r.ID, ErrConflict)
	}
	r.Version = 1
	s.reqs[r.ID] = clone(r)
	s.order[r.ID] = len(s.order)
	return nil
}

func (s *memStore) GetRequest(ctx context.Context, id string) (Request, error) {
	if err := ctx.Err(); err != nil {
		return Request{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reqs[id]
	if !ok {
		return Request{}, fmt.Errorf("request %s: %w", id, ErrNotFound)
	}
	return clone(r), nil
}

func (s *memStore) UpdateRequest(ctx context.Context, id string, fn func(*Request) error) (Request, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Request{}, err
		}
		cur, err := s.GetRequest(ctx, id)
		if err != nil {
			return Request{}, err
		}
		next := clone(cur)
		if err := fn(&next); err != nil {
			return Request{}, err
		}
		runtime.Gosched() // widen the window for a competing update
		s.mu.Lock()
		if s.reqs[id].Version != cur.Version {
			s.mu.Unlock()
			s.conflicts.Add(1)
			continue // lost the compare-and-swap; read again and retry
		}
		next.Version = cur.Version + 1
		s.reqs[id] = clone(next)
		s.mu.Unlock()
		return next, nil
	}
}

func (s *memStore) ListRequests(ctx context.Context, f Filter) ([]Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.reqs {
		if (len(f.States) == 0 || slices.Contains(f.States, r.State)) &&
			(f.Requester == "" || f.Requester == r.Requester) &&
			(f.Beneficiary == "" || f.Beneficiary == r.Beneficiary) &&
			(f.Entitlement == "" || f.Entitlement == r.Entitlement) {
			out = append(out, clone(r))
		}
	}
	slices.SortFunc(out, func(a, b Request) int { return s.order[b.ID] - s.order[a.ID] })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (s *memStore) AddGrant(ctx context.Context, g GrantRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grants = append(s.grants, g)
	return nil
}

func (s *memStore) Grants(ctx context.Context, requestID string) ([]GrantRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []GrantRecord
	for _, g := range s.grants {
		if g.RequestID == requestID {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *memStore) GrantsFor(ctx context.Context, beneficiary Principal, since time.Time, limit int) ([]GrantRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []GrantRecord
	for i := len(s.grants) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		g := s.grants[i]
		if r, ok := s.reqs[g.RequestID]; ok && r.Beneficiary == beneficiary && !g.IssuedAt.Before(since) {
			out = append(out, g)
		}
	}
	return out, nil
}

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}
