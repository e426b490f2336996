package boltstore

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Failing closed after a write error (reliability cases T4 and T5).
//
// Linux reports a failed fsync once and may drop the dirty pages it could
// not write ("fsyncgate"); bbolt rolls back its in-memory state but may
// already have written the transaction's meta page, so the same process
// (through the mmap) and, after a restart, the next one could see a
// transaction whose caller was told it failed. So after any commit that
// fails (for a reason other than the transaction's own function), the
// Store refuses every read and write with ErrFailed until Reopen closes
// the file, reverts a meta page newer than the last commit known durable,
// and opens it again. Write transactions also check that they start right
// after the last durable commit, so none ever builds on unsynced state.

// guard tracks the last durable commit and whether the store has failed.
type guard struct {
	mu      sync.Mutex
	durable uint64 // txid of the last commit that returned success
	failed  error  // the commit error that closed the store, or nil
	changed chan struct{}
}

func (g *guard) reset(durable uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.durable, g.failed = durable, nil
	g.signalLocked()
}

func (g *guard) signalLocked() {
	if g.changed != nil {
		close(g.changed)
	}
	g.changed = make(chan struct{})
}

func (g *guard) state() (durable uint64, changed <-chan struct{}, failed error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	return g.durable, g.changed, g.failed
}

func (g *guard) committed(txid uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if txid > g.durable {
		g.durable = txid
		g.signalLocked()
	}
}

// fail records err; it reports whether this call closed the store.
func (g *guard) fail(err error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failed != nil {
		return false
	}
	g.failed = err
	g.signalLocked()
	return true
}

// outcomeTimeout bounds how long a write transaction waits for the
// previous commit's outcome before failing closed.
const outcomeTimeout = 10 * time.Second

var errOutOfOrder = errors.New("started before the previous commit's outcome was known")

// errWaitTurn is returned by a write transaction that began before the
// previous one's outcome was recorded; it is retried once that outcome is
// known.
type errWaitTurn struct{ changed <-chan struct{} }

func (errWaitTurn) Error() string { return "boltstore: previous commit outcome pending" }

// Err returns nil while the store accepts reads and writes, or an error
// wrapping ErrFailed after a failed commit, until Reopen succeeds.
func (s *Store) Err() error {
	_, _, failed := s.guard.state()
	if failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, failed)
	}
	return nil
}

// view runs fn in a read transaction unless the store has failed.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	// Fail fast before the lock too: a pending Reopen (which takes dbMu for
	// writing) must not make callers of a failed store wait behind it.
	if err := s.Err(); err != nil {
		return err
	}
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if err := s.Err(); err != nil {
		return err
	}
	return viewDamaged(s.db, fn)
}

// viewDamaged runs fn in a read transaction of db and turns a panic or a
// memory fault inside bbolt (which is how it meets a damaged page, or a
// page past the end of a truncated file) into an error wrapping
// ErrDamaged, so that readers of a copied or damaged file report it
// instead of crashing.
func viewDamaged(db *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w: %v", db.Path(), ErrDamaged, r)
		}
	}()
	return db.View(fn)
}

// update runs fn in a write transaction committed at once.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	return s.write(func(db *bolt.DB) func(func(*bolt.Tx) error) error { return db.Update }, fn)
}

// batch runs fn in a write transaction that may be committed together
// with concurrent ones (bbolt's group commit).
func (s *Store) batch(fn func(*bolt.Tx) error) error {
	return s.write(func(db *bolt.DB) func(func(*bolt.Tx) error) error { return db.Batch }, fn)
}

// write runs fn through commit, guarded: it refuses to run once the store
// has failed, makes the transaction wait until the previous commit's
// outcome is known, and closes the store when the commit itself fails.
func (s *Store) write(commitOf func(*bolt.DB) func(func(*bolt.Tx) error) error, fn func(*bolt.Tx) error) error {
	// Refuse a failed store up front, before the lock (a pending Reopen
	// must not block callers) and before bbolt, whose handle a failed
	// Reopen has closed ("database not open" would hide ErrFailed).
	if err := s.Err(); err != nil {
		return err
	}
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if err := s.Err(); err != nil {
		return err
	}
	commit := commitOf(s.db)
	for {
		fnOK := false // the last run of fn returned nil; bbolt's Batch may run it twice
		err := commit(func(tx *bolt.Tx) error {
			fnOK = false
			durable, changed, failed := s.guard.state()
			if failed != nil {
				return fmt.Errorf("%w: %w", ErrFailed, failed)
			}
			id := uint64(tx.ID())
			if id != durable+1 {
				return errWaitTurn{changed}
			}
			tx.OnCommit(func() { s.guard.committed(id) })
			if err := fn(tx); err != nil {
				return err
			}
			fnOK = true
			return nil
		})
		if err == nil {
			return nil
		}
		var wait errWaitTurn
		if errors.As(err, &wait) {
			select {
			case <-wait.changed:
				continue
			case <-time.After(outcomeTimeout):
				// Never expected: a commit whose outcome was not recorded.
				err = fmt.Errorf("write transaction %w", errOutOfOrder)
				if s.guard.fail(err) && s.onFailure != nil {
					s.onFailure(err)
				}
				return fmt.Errorf("%w: %w", ErrFailed, err)
			}
		}
		if fnOK {
			// fn succeeded, so the commit failed: data or meta pages not
			// written or not synced.
			if s.guard.fail(err) && s.onFailure != nil {
				s.onFailure(err)
			}
			return fmt.Errorf("%w: %w", ErrFailed, err)
		}
		return err
	}
}
