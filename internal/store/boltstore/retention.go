package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/internal/audit"
)

// archivedThroughKey (in meta) is the last sequence number DropPrefix
// removed from the ledger bucket; absent when none was.
var archivedThroughKey = []byte("ledger_archived_through")

// dropChunk is how many records one DropPrefix transaction removes.
const dropChunk = 10000

// ArchivedThrough returns the last sequence number removed from the live
// ledger by DropPrefix, or 0. The ledger bucket then starts at the next one.
func (s *Store) ArchivedThrough(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n uint64
	err := s.view(func(tx *bolt.Tx) error {
		n = archivedThrough(tx)
		return nil
	})
	return n, err
}

func archivedThrough(tx *bolt.Tx) uint64 {
	if m := tx.Bucket(metaBucket); m != nil {
		if v := m.Get(archivedThroughKey); len(v) == 8 {
			return binary.BigEndian.Uint64(v)
		}
	}
	return 0
}

// DropPrefix removes records 1..through and their index entries from the
// live ledger, in transactions of dropChunk records, and records through
// as ArchivedThrough. The Merkle tree's stored hashes stay, so the tree's
// size, root and every later checkpoint and proof are unchanged, and
// appends go on from the head. Export the records first (writ admin
// archive does, and checks the export against the tree): they are gone
// from this store afterwards.
//
// It refuses (nothing removed) unless a stored checkpoint covers through,
// and unless at least one record stays (the head, which the next append
// links to).
func (s *Store) DropPrefix(ctx context.Context, through uint64) error {
	size, _, ok, err := s.LatestCheckpoint(ctx)
	if err != nil {
		return err
	}
	if !ok || uint64(size) < through {
		return fmt.Errorf("drop records 1..%d: no signed checkpoint covers them (the newest covers %d): %w", through, size, ErrNotCovered)
	}
	head, ok, err := s.Head(ctx)
	if err != nil {
		return err
	}
	if !ok || through >= head.Seq {
		return fmt.Errorf("drop records 1..%d: the ledger's head is %d and must stay: %w", through, head.Seq, ErrNotCovered)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		done := false
		err := s.update(func(tx *bolt.Tx) error {
			lb := tx.Bucket(ledgerBucket)
			c := lb.Cursor()
			n := 0
			for k, v := c.First(); ; k, v = c.First() {
				if k == nil || len(k) != 8 || binary.BigEndian.Uint64(k) > through {
					done = true
					break
				}
				if n == dropChunk {
					break
				}
				seq := binary.BigEndian.Uint64(k)
				if e, err := audit.Decode(v); err == nil && e.Seq == seq {
					if err := unindexEntry(tx, e); err != nil {
						return err
					}
				}
				if err := c.Delete(); err != nil {
					return fmt.Errorf("drop record %d: %w", seq, err)
				}
				n++
			}
			m, err := tx.CreateBucketIfNotExists(metaBucket)
			if err != nil {
				return err
			}
			last := through
			if k, _ := lb.Cursor().First(); len(k) == 8 {
				last = min(through, binary.BigEndian.Uint64(k)-1)
			}
			return m.Put(archivedThroughKey, binary.BigEndian.AppendUint64(nil, max(last, archivedThrough(tx))))
		})
		if err != nil {
			return fmt.Errorf("drop archived records: %w", err)
		}
		if done {
			return nil
		}
	}
}

// unindexEntry removes e's index entries (indexEntry's, and the
// ledger_by_grant entry if it names e).
func unindexEntry(tx *bolt.Tx, e audit.Entry) error {
	seq := seqKey(e.Seq)
	del := func(parent []byte, name string) error {
		if p := tx.Bucket(parent); p != nil {
			if b := p.Bucket([]byte(name)); b != nil {
				return b.Delete(seq)
			}
		}
		return nil
	}
	for _, id := range principals(e) {
		if err := del(ledgerByIdentityBucket, id); err != nil {
			return err
		}
	}
	if e.Entitlement != "" {
		if err := del(ledgerByEntitlementBucket, e.Entitlement); err != nil {
			return err
		}
	}
	if refs := tx.Bucket(ledgerByRefBucket); refs != nil {
		if e.GrantID != "" {
			if err := refs.Delete(refKey(refGrant, e.GrantID, e.Seq)); err != nil {
				return err
			}
		}
		for _, id := range e.RefIDs() {
			if err := refs.Delete(refKey(refRequest, id, e.Seq)); err != nil {
				return err
			}
		}
	}
	if ib := tx.Bucket(ledgerByGrantBucket); ib != nil && e.GrantID != "" {
		if v := ib.Get([]byte(e.GrantID)); len(v) == 8 && binary.BigEndian.Uint64(v) == e.Seq {
			return ib.Delete([]byte(e.GrantID))
		}
	}
	return nil
}
