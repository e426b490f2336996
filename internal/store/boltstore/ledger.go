package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/internal/audit"
)

var (
	_ audit.Store      = (*Store)(nil)
	_ audit.HeadReader = (*Store)(nil)
)

// scanChunk is how many records ScanRecords copies per read transaction, so
// that verifying a long ledger never holds one transaction open throughout.
const scanChunk = 1024

// seqKey returns the ledger key for seq.
func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// AppendEntry implements audit.Store. It returns ctx's error if ctx is done
// before it starts; once the append is queued it runs to completion. It
// returns build's error or audit.ErrNotNext (nothing stored), an error
// wrapping audit.ErrTampered if the stored head is unreadable (appends stop
// until the ledger is repaired: fail closed), or bbolt's error. On success
// the entry has been fsynced.
func (s *Store) AppendEntry(ctx context.Context, build func(head audit.Entry, ok bool) (audit.Entry, error)) (audit.Entry, error) {
	if err := ctx.Err(); err != nil {
		return audit.Entry{}, fmt.Errorf("append ledger entry: %w", err)
	}
	var out audit.Entry
	fn := func(tx *bolt.Tx) error {
		var err error
		out, err = s.appendInTx(tx, build)
		return err
	}
	// Alone, commit at once rather than wait out the batch delay; with
	// company, group-commit. fn is the same either way.
	commit := s.db.Batch
	if s.appending.Add(1) == 1 {
		commit = s.db.Update
	}
	defer s.appending.Add(-1)
	if err := commit(fn); err != nil {
		return audit.Entry{}, fmt.Errorf("append ledger entry: %w", err)
	}
	return out, nil
}

// appendInTx appends, inside the write transaction tx, the entry build
// returns for the current head, and maintains the ledger's indexes in the
// same transaction. It is the one place a ledger record is written: every
// append (AppendEntry, or a decision committed with its records) goes
// through it, so whatever must be written with each record (an index, a
// tree hash) is added here. It returns build's error, audit.ErrNotNext, an
// error wrapping audit.ErrTampered for an unreadable head, or bbolt's error;
// the caller's transaction must then roll back.
func (s *Store) appendInTx(tx *bolt.Tx, build func(head audit.Entry, ok bool) (audit.Entry, error)) (audit.Entry, error) {
	b := tx.Bucket(ledgerBucket)
	if b == nil {
		return audit.Entry{}, fmt.Errorf("bucket %s missing", ledgerBucket)
	}
	head, ok, err := headOf(b)
	if err != nil {
		return audit.Entry{}, err
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
	if err := b.Put(seqKey(next.Seq), raw); err != nil {
		return audit.Entry{}, fmt.Errorf("put record %d: %w", next.Seq, err)
	}
	// Index the newest record about each credential, in the same
	// transaction, so renew and release find it without a scan.
	if next.GrantID != "" && next.CredentialRef != "" {
		if ib := tx.Bucket(ledgerByGrantBucket); ib != nil {
			if err := ib.Put([]byte(next.GrantID), seqKey(next.Seq)); err != nil {
				return audit.Entry{}, fmt.Errorf("index record %d by grant: %w", next.Seq, err)
			}
		}
	}
	return next, nil
}

// Head implements audit.HeadReader: it returns the last ledger entry, or
// ok=false if the ledger is empty. It returns an error wrapping
// audit.ErrTampered if the last record is unreadable.
func (s *Store) Head(ctx context.Context) (audit.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return audit.Entry{}, false, fmt.Errorf("read ledger head: %w", err)
	}
	var (
		head audit.Entry
		ok   bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(ledgerBucket)
		if b == nil {
			return nil
		}
		var err error
		head, ok, err = headOf(b)
		return err
	})
	if err != nil {
		return audit.Entry{}, false, fmt.Errorf("read ledger head: %w", err)
	}
	return head, ok, nil
}

// headOf decodes the last record of the ledger bucket b. Decode copies
// everything it returns, so the entry outlives the transaction.
func headOf(b *bolt.Bucket) (audit.Entry, bool, error) {
	k, v := b.Cursor().Last()
	if k == nil {
		return audit.Entry{}, false, nil
	}
	if len(k) != 8 || v == nil {
		return audit.Entry{}, false, fmt.Errorf("last ledger key %x is not a record: %w", k, audit.ErrTampered)
	}
	seq := binary.BigEndian.Uint64(k)
	head, err := audit.Decode(v)
	if err != nil {
		return audit.Entry{}, false, fmt.Errorf("ledger head %d: %w: %w", seq, audit.ErrTampered, err)
	}
	if head.Seq != seq {
		return audit.Entry{}, false, fmt.Errorf("ledger key %d holds record %d: %w", seq, head.Seq, audit.ErrTampered)
	}
	return head, true, nil
}

// record is a ledger record copied out of a transaction.
type record struct {
	seq uint64
	raw []byte
}

// ScanRecords implements audit.Scanner. It reads the ledger in chunks of
// scanChunk records per read transaction and calls fn outside any
// transaction, with a copy of the stored bytes that fn may keep. Records
// appended during the scan may or may not be seen. A key that is not an
// 8-byte sequence number, or a nested bucket, stops the scan with an error
// wrapping audit.ErrTampered.
func (s *Store) ScanRecords(ctx context.Context, fn func(seq uint64, raw []byte) error) error {
	var after []byte // last key passed to fn; nil before the first chunk
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs, last, done, err := s.readChunk(after)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(r.seq, r.raw); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
		after = last
	}
}

// readChunk copies up to scanChunk records that follow the key after (from
// the first key if after is nil). done reports that the ledger has no more.
func (s *Store) readChunk(after []byte) (recs []record, last []byte, done bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(ledgerBucket)
		if b == nil {
			done = true
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.First()
		} else if k, v = c.Seek(after); bytes.Equal(k, after) {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			if len(recs) == scanChunk {
				return nil
			}
			if len(k) != 8 || v == nil {
				return fmt.Errorf("ledger key %x is not an 8-byte sequence number: %w", k, audit.ErrTampered)
			}
			recs = append(recs, record{seq: binary.BigEndian.Uint64(k), raw: bytes.Clone(v)})
			last = bytes.Clone(k)
		}
		done = true
		return nil
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("scan ledger: %w", err)
	}
	return recs, last, done, nil
}

// GrantEntry returns the newest ledger entry about the credential of grant
// grantID (its grant, a renewal, a release or a revocation), or ok=false if
// the ledger has none. The index is written in the same transaction as the
// entry, so it is never ahead of or behind the ledger.
func (s *Store) GrantEntry(ctx context.Context, grantID string) (audit.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return audit.Entry{}, false, err
	}
	var raw []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		ib, b := tx.Bucket(ledgerByGrantBucket), tx.Bucket(ledgerBucket)
		if ib == nil || b == nil {
			return nil
		}
		seq := ib.Get([]byte(grantID))
		if seq == nil {
			return nil
		}
		v := b.Get(seq)
		if v == nil {
			return fmt.Errorf("index for grant %q points at a missing record: %w", grantID, audit.ErrTampered)
		}
		raw = bytes.Clone(v)
		return nil
	})
	if err != nil || raw == nil {
		return audit.Entry{}, false, err
	}
	e, err := audit.Decode(raw)
	if err != nil {
		return audit.Entry{}, false, fmt.Errorf("grant %q: %w", grantID, err)
	}
	return e, true, nil
}
