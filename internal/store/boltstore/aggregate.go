package boltstore

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/approval"
)

// aggregate describes one kind of versioned record kept in its own bucket
// (requests, break-glass uses), so that create, get and the
// compare-and-swap update are written once.
type aggregate[T any] struct {
	what   string // for messages: "request", "break-glass"
	bucket []byte
	id     func(*T) string
	// version points at T's store-managed Version field.
	version func(*T) *uint64
	// clone copies what fn might modify in place (slices), so fn never
	// writes through to the decoded original.
	clone  func(T) T
	encode func(T) ([]byte, error)
	decode func(key, raw []byte) (T, error)
}

// create stores v with Version 1 (whatever v says). It returns an error
// wrapping approval.ErrConflict if the ID exists, or approval.ErrInvalid if
// it is empty.
func (a aggregate[T]) create(ctx context.Context, db *bolt.DB, v T) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create %s %s: %w", a.what, a.id(&v), err)
	}
	return db.Update(func(tx *bolt.Tx) error { return a.createIn(tx, v) })
}

// createIn is create inside the write transaction tx.
func (a aggregate[T]) createIn(tx *bolt.Tx, v T) error {
	id := a.id(&v)
	if id == "" {
		return fmt.Errorf("create %s: empty id: %w", a.what, approval.ErrInvalid)
	}
	*a.version(&v) = 1
	raw, err := a.encode(v)
	if err != nil {
		return fmt.Errorf("create %s %s: %w", a.what, id, err)
	}
	b, err := writeBucket(tx, a.bucket)
	if err != nil {
		return fmt.Errorf("create %s %s: %w", a.what, id, err)
	}
	if b.Get([]byte(id)) != nil {
		return fmt.Errorf("create %s %s: id exists: %w", a.what, id, approval.ErrConflict)
	}
	if err := b.Put([]byte(id), raw); err != nil {
		return fmt.Errorf("create %s %s: %w", a.what, id, err)
	}
	return nil
}

// getIn reads and decodes id from b, which may be nil (a read-only file
// that never had the bucket); a missing record is approval.ErrNotFound.
func (a aggregate[T]) getIn(b *bolt.Bucket, id string) (T, error) {
	var zero T
	if b == nil || id == "" {
		return zero, approval.ErrNotFound
	}
	v := b.Get([]byte(id))
	if v == nil {
		return zero, approval.ErrNotFound
	}
	return a.decode([]byte(id), v)
}

// get returns record id, or an error wrapping approval.ErrNotFound or
// ErrCorruptRecord.
func (a aggregate[T]) get(ctx context.Context, db *bolt.DB, id string) (T, error) {
	var out T
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("get %s %s: %w", a.what, id, err)
	}
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = a.getIn(tx.Bucket(a.bucket), id)
		return err
	})
	if err != nil {
		var zero T
		return zero, fmt.Errorf("get %s %s: %w", a.what, id, err)
	}
	return out, nil
}

// update is the compare-and-swap: the read, fn and the write run in one
// bbolt write transaction, and bbolt runs one writer at a time, so no other
// write can interleave and fn runs exactly once, on a freshly decoded copy.
// (An etcd backend does the same with Txn(If(ModRevision = read revision))
// and reruns fn when the compare fails.) If fn fails nothing is written and
// its error is returned unchanged. Otherwise the copy is stored with
// Version one above the stored one (fn's change to Version is ignored) and
// returned as a later get will read it. Errors wrap approval.ErrNotFound,
// approval.ErrInvalid (fn changed the ID) or ErrCorruptRecord.
func (a aggregate[T]) update(ctx context.Context, db *bolt.DB, id string, fn func(*T) error) (T, error) {
	var out, zero T
	if err := ctx.Err(); err != nil {
		return zero, fmt.Errorf("update %s %s: %w", a.what, id, err)
	}
	var fnErr error
	err := db.Update(func(tx *bolt.Tx) error {
		var err error
		out, fnErr, err = a.updateIn(tx, id, fn)
		if fnErr != nil {
			return fnErr
		}
		return err
	})
	if fnErr != nil {
		return zero, fnErr
	}
	if err != nil {
		return zero, fmt.Errorf("update %s %s: %w", a.what, id, err)
	}
	return out, nil
}

// updateIn is update inside the write transaction tx: it returns fn's
// error as fnErr (nothing written) and its own failures, unwrapped, as err.
func (a aggregate[T]) updateIn(tx *bolt.Tx, id string, fn func(*T) error) (out T, fnErr, err error) {
	var zero T
	b, err := writeBucket(tx, a.bucket)
	if err != nil {
		return zero, nil, err
	}
	cur, err := a.getIn(b, id)
	if err != nil {
		return zero, nil, err
	}
	next := a.clone(cur)
	if fnErr = fn(&next); fnErr != nil {
		return zero, fnErr, nil
	}
	if got := a.id(&next); got != id {
		return zero, nil, fmt.Errorf("update changed the id to %q: %w", got, approval.ErrInvalid)
	}
	*a.version(&next) = *a.version(&cur) + 1
	raw, err := a.encode(next)
	if err != nil {
		return zero, nil, err
	}
	if err := b.Put([]byte(id), raw); err != nil {
		return zero, nil, err
	}
	out, err = a.decode([]byte(id), raw)
	return out, nil, err
}
