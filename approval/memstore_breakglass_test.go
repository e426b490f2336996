package approval

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
)

// The memStore's BreakGlassStore half. UpdateBreakGlass is optimistic like
// UpdateRequest: fn runs outside the lock and is retried when another
// update won meanwhile.

var _ BreakGlassStore = (*memStore)(nil)

func cloneBreakGlass(bg BreakGlass) BreakGlass {
	bg.Reviews = slices.Clone(bg.Reviews)
	for i := range bg.Reviews {
		bg.Reviews[i].Groups = slices.Clone(bg.Reviews[i].Groups)
	}
	return bg
}

func (s *memStore) CreateBreakGlass(ctx context.Context, bg BreakGlass) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.bgs[bg.ID]; ok {
		return fmt.Errorf("create break-glass %s: %w", bg.ID, ErrConflict)
	}
	bg.Version = 1
	s.bgs[bg.ID] = cloneBreakGlass(bg)
	s.bgOrder[bg.ID] = len(s.bgOrder)
	return nil
}

func (s *memStore) GetBreakGlass(ctx context.Context, id string) (BreakGlass, error) {
	if err := ctx.Err(); err != nil {
		return BreakGlass{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bg, ok := s.bgs[id]
	if !ok {
		return BreakGlass{}, fmt.Errorf("break-glass %s: %w", id, ErrNotFound)
	}
	return cloneBreakGlass(bg), nil
}

func (s *memStore) UpdateBreakGlass(ctx context.Context, id string, fn func(*BreakGlass) error) (BreakGlass, error) {
	for {
		if err := ctx.Err(); err != nil {
			return BreakGlass{}, err
		}
		cur, err := s.GetBreakGlass(ctx, id)
		if err != nil {
			return BreakGlass{}, err
		}
		next := cloneBreakGlass(cur)
		if err := fn(&next); err != nil {
			return BreakGlass{}, err
		}
		runtime.Gosched() // widen the window for a competing update
		s.mu.Lock()
		if s.bgs[id].Version != cur.Version {
			s.mu.Unlock()
			s.conflicts.Add(1)
			continue
		}
		next.Version = cur.Version + 1
		s.bgs[id] = cloneBreakGlass(next)
		s.mu.Unlock()
		return next, nil
	}
}

func (s *memStore) ListBreakGlass(ctx context.Context, f BreakGlassFilter) ([]BreakGlass, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []BreakGlass
	for _, bg := range s.bgs {
		if (!f.Open || bg.State == BreakGlassOpen) && (f.Taker == "" || f.Taker == bg.Taker) {
			out = append(out, cloneBreakGlass(bg))
		}
	}
	slices.SortFunc(out, func(a, b BreakGlass) int {
		if c := b.TakenAt.Compare(a.TakenAt); c != 0 {
			return c
		}
		return cmp.Compare(s.bgOrder[b.ID], s.bgOrder[a.ID])
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}
