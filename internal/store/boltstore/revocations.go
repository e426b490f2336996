package boltstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/revoke"
)

var _ revoke.Queue = (*RevocationQueue)(nil)

// RevocationQueue is the durable revocation queue (revoke.Queue) kept in
// the store's revocations bucket: key = item ID, value = a versioned JSON
// record of the item. It is safe for concurrent use and lives as long as
// its Store.
type RevocationQueue struct {
	s *Store
}

// Revocations returns the store's revocation queue.
func (s *Store) Revocations() *RevocationQueue { return &RevocationQueue{s: s} }

// revocationRecord is the stored form of a revoke.Item.
type revocationRecord struct {
	V          int       `json:"v"`
	ID         string    `json:"id"`
	Ref        refRecord `json:"ref"`
	RequestID  string    `json:"request_id,omitempty"`
	GrantID    string    `json:"grant_id,omitempty"`
	Attempts   int       `json:"attempts"`
	NextAt     time.Time `json:"next_at"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	LastError  string    `json:"last_error,omitempty"`
}

func toRevocationRecord(it revoke.Item) revocationRecord {
	return revocationRecord{
		V:          recordVersion,
		ID:         it.ID,
		Ref:        toRefRecord(it.Ref),
		RequestID:  it.RequestID,
		GrantID:    it.GrantID,
		Attempts:   it.Attempts,
		NextAt:     it.NextAt,
		EnqueuedAt: it.EnqueuedAt,
		LastError:  it.LastError,
	}
}

func (rec revocationRecord) item() revoke.Item {
	return revoke.Item{
		ID:         rec.ID,
		Ref:        rec.Ref.ref(),
		RequestID:  rec.RequestID,
		GrantID:    rec.GrantID,
		Attempts:   rec.Attempts,
		NextAt:     rec.NextAt,
		EnqueuedAt: rec.EnqueuedAt,
		LastError:  rec.LastError,
	}
}

func decodeRevocation(key, raw []byte) (revoke.Item, error) {
	var rec revocationRecord
	if err := decodeRecord("revocation "+string(key), raw, &rec, func() int { return rec.V }); err != nil {
		return revoke.Item{}, err
	}
	if rec.ID != string(key) {
		return revoke.Item{}, fmt.Errorf("decode revocation %s: record holds item %q: %w", key, rec.ID, ErrCorruptRecord)
	}
	return rec.item(), nil
}

// Enqueue implements revoke.Queue. If an item with it.ID is queued it
// leaves it unchanged and returns nil. It returns an error wrapping
// approval.ErrInvalid if it.ID is empty.
func (q *RevocationQueue) Enqueue(ctx context.Context, it revoke.Item) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("enqueue revocation %s: %w", it.ID, err)
	}
	if it.ID == "" {
		return fmt.Errorf("enqueue revocation: empty id: %w", approval.ErrInvalid)
	}
	if err := q.s.db.Update(func(tx *bolt.Tx) error { return enqueueIn(tx, it) }); err != nil {
		return fmt.Errorf("enqueue revocation %s: %w", it.ID, err)
	}
	return nil
}

// enqueueIn is Enqueue inside the write transaction tx.
func enqueueIn(tx *bolt.Tx, it revoke.Item) error {
	if it.ID == "" {
		return fmt.Errorf("empty id: %w", approval.ErrInvalid)
	}
	raw, err := encodeRecord("revocation", toRevocationRecord(it))
	if err != nil {
		return err
	}
	b, err := writeBucket(tx, revocationsBucket)
	if err != nil {
		return err
	}
	if b.Get([]byte(it.ID)) != nil {
		return nil
	}
	return b.Put([]byte(it.ID), raw)
}

// List returns every queued item, due or not, earliest NextAt first, for
// operators and for tests that check that a decision's revocations were
// queued. It does not claim anything.
func (q *RevocationQueue) List(ctx context.Context) ([]revoke.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	var out []revoke.Item
	err := q.s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(revocationsBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			it, err := decodeRevocation(k, v)
			if err != nil {
				return err
			}
			out = append(out, it)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	slices.SortFunc(out, func(a, b revoke.Item) int {
		if c := a.NextAt.Compare(b.NextAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Due implements revoke.Queue: in one write transaction it finds the items
// with NextAt at or before now, takes the limit earliest (all if limit is
// not positive), sets their NextAt to now+lease and returns them. It scans
// the whole bucket, which is fine for the handful of revocations that are
// ever outstanding; an index by NextAt would be the next step. A corrupt
// record fails the call (ErrCorruptRecord) rather than being skipped.
func (q *RevocationQueue) Due(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]revoke.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("claim due revocations: %w", err)
	}
	var due []revoke.Item
	err := q.s.db.Update(func(tx *bolt.Tx) error {
		b, err := writeBucket(tx, revocationsBucket)
		if err != nil {
			return err
		}
		err = b.ForEach(func(k, v []byte) error {
			it, err := decodeRevocation(k, v)
			if err != nil {
				return err
			}
			if !it.NextAt.After(now) {
				due = append(due, it)
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.SortFunc(due, func(a, b revoke.Item) int {
			if c := a.NextAt.Compare(b.NextAt); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		if limit > 0 && len(due) > limit {
			due = due[:limit]
		}
		for i := range due {
			due[i].NextAt = now.Add(lease)
			raw, err := encodeRecord("revocation", toRevocationRecord(due[i]))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(due[i].ID), raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim due revocations: %w", err)
	}
	return due, nil
}

// Reschedule implements revoke.Queue. An item no longer queued is left
// alone (nil error).
func (q *RevocationQueue) Reschedule(ctx context.Context, id string, attempts int, next time.Time, lastErr string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reschedule revocation %s: %w", id, err)
	}
	key := []byte(id)
	err := q.s.db.Update(func(tx *bolt.Tx) error {
		b, err := writeBucket(tx, revocationsBucket)
		if err != nil {
			return err
		}
		v := b.Get(key)
		if v == nil {
			return nil
		}
		it, err := decodeRevocation(key, v)
		if err != nil {
			return err
		}
		it.Attempts, it.NextAt, it.LastError = attempts, next, lastErr
		raw, err := encodeRecord("revocation", toRevocationRecord(it))
		if err != nil {
			return err
		}
		return b.Put(key, raw)
	})
	if err != nil {
		return fmt.Errorf("reschedule revocation %s: %w", id, err)
	}
	return nil
}

// Done implements revoke.Queue: it deletes the item, if queued.
func (q *RevocationQueue) Done(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("finish revocation %s: %w", id, err)
	}
	if id == "" {
		return nil
	}
	err := q.s.db.Update(func(tx *bolt.Tx) error {
		b, err := writeBucket(tx, revocationsBucket)
		if err != nil {
			return err
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("finish revocation %s: %w", id, err)
	}
	return nil
}

// Pending implements revoke.Queue.
func (q *RevocationQueue) Pending(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("count pending revocations: %w", err)
	}
	var n int
	err := q.s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(revocationsBucket); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count pending revocations: %w", err)
	}
	return n, nil
}
