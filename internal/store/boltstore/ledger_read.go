package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/internal/audit"
)

// checkSize returns ErrDamaged if the file is shorter than the pages its
// header says it has: a truncated copy. Reading those pages would fault.
func checkSize(tx *bolt.Tx, size int64) error {
	if tx.Size() > size {
		return fmt.Errorf("file holds %d bytes but its header says %d (truncated, or copied while being written: take a snapshot instead): %w",
			size, tx.Size(), ErrDamaged)
	}
	return nil
}

// openReadOnly checks a file opened read-only: not truncated, every page
// sound (with check), and a schema this code reads.
func openReadOnly(db *bolt.DB, path string, check bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return viewDamaged(db, func(tx *bolt.Tx) error {
		if err := checkSize(tx, fi.Size()); err != nil {
			return err
		}
		if check {
			if err := checkStructure(tx); err != nil {
				return fmt.Errorf("%w: %w (copied while being written? take copies with writ audit snapshot)", ErrDamaged, err)
			}
		}
		return checkSchema(tx)
	})
}

// checkStructure reads every key and value reachable from the root, in
// this goroutine (so view turns a fault into an error; bbolt's own
// Tx.Check runs in a goroutine of its own, where a fault on a torn page
// kills the process), checks that keys are in order, and that a file with
// more than its initial pages holds Writ's meta and ledger buckets, so a
// torn root does not read as an empty ledger.
func checkStructure(tx *bolt.Tx) error {
	var sink byte
	var walk func(path string, b *bolt.Bucket) error
	walk = func(path string, b *bolt.Bucket) error {
		var prev []byte
		return b.ForEach(func(k, v []byte) error {
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				return fmt.Errorf("bucket %s: keys out of order at %x", path, k)
			}
			prev = k
			if len(k) > 0 {
				sink ^= k[0] ^ k[len(k)-1]
			}
			if v != nil {
				if len(v) > 0 {
					sink ^= v[0] ^ v[len(v)-1]
				}
				return nil
			}
			nb := b.Bucket(k)
			if nb == nil {
				return fmt.Errorf("bucket %s: key %x is neither a value nor a bucket", path, k)
			}
			return walk(path+"/"+string(k), nb)
		})
	}
	err := tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(string(name), b) })
	if err != nil {
		return err
	}
	runtime.KeepAlive(sink) // the reads are the point
	if tx.Bucket(metaBucket) == nil || tx.Bucket(ledgerBucket) == nil {
		if initial := int64(4 * tx.DB().Info().PageSize); tx.Size() > initial {
			return fmt.Errorf("the file has %d bytes of pages but no %s or %s bucket", tx.Size(), metaBucket, ledgerBucket)
		}
	}
	return nil
}

// exportChunk is how many records ExportRecords reads per transaction.
const exportChunk = 4096

// ExportRecords calls fn, outside any transaction, with each stored record
// that q matches, in sequence order; fn may keep the record. Records are
// read in chunks of short read transactions, so a long export never holds
// one open. When q filters only on the sequence range, records are passed
// as stored without decoding them (an export of a damaged ledger still
// carries every record, for the verifier to judge); otherwise a record that
// does not decode stops the export with an error wrapping
// audit.ErrTampered that names it. Records appended during the export may
// or may not be seen.
func (s *Store) ExportRecords(ctx context.Context, q audit.Query, fn func(audit.Record) error) error {
	after := uint64(0)
	if q.FromSeq > 1 {
		after = q.FromSeq - 1
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var recs []audit.Record
		done := false
		err := s.view(func(tx *bolt.Tx) error {
			b := tx.Bucket(ledgerBucket)
			if b == nil {
				done = true
				return nil
			}
			c := b.Cursor()
			k, v := c.Seek(seqKey(after + 1))
			for ; k != nil; k, v = c.Next() {
				if len(k) != 8 || v == nil {
					return fmt.Errorf("ledger key %x is not an 8-byte sequence number: %w", k, audit.ErrTampered)
				}
				seq := binary.BigEndian.Uint64(k)
				if q.ToSeq != 0 && seq > q.ToSeq {
					break
				}
				if len(recs) == exportChunk {
					return nil
				}
				recs = append(recs, audit.Record{Seq: seq, Raw: bytes.Clone(v)})
			}
			done = true
			return nil
		})
		if err != nil {
			return fmt.Errorf("export ledger: %w", err)
		}
		for _, r := range recs {
			after = r.Seq
			if q.ByContent() {
				e, err := audit.Decode(r.Raw)
				if err != nil {
					return fmt.Errorf("export ledger: record %d: %w: %w", r.Seq, audit.ErrTampered, err)
				}
				if !q.Match(e) {
					continue
				}
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

// DefaultSearchScan is how many records one SearchRecords call examines at
// most before returning a page (possibly short, or empty) with a cursor to
// continue from, so that a search the indexes cannot narrow never holds a
// read transaction, or a caller, for long.
const DefaultSearchScan = 50000

// SearchRecords returns up to p.Limit records that q matches, newest first
// (oldest first with p.OldestFirst), starting after the sequence number
// p.After in that direction (0: from the newest, or oldest). next is the
// cursor for the following page, or 0 when there is none. It examines at
// most DefaultSearchScan records per call, using the narrowest index the
// query allows (grant, request or break-glass ID, identity, entitlement);
// without one, or on a file whose indexes are not built (a read-only open
// of an old file), it walks the ledger itself.
func (s *Store) SearchRecords(ctx context.Context, q audit.Query, p audit.Page) (recs []audit.Record, next uint64, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if p.Limit <= 0 {
		p.Limit = 100
	}
	// Start inside the sequence range.
	if p.OldestFirst && q.FromSeq > 0 && p.After+1 < q.FromSeq {
		p.After = q.FromSeq - 1
	}
	if !p.OldestFirst && q.ToSeq != 0 && (p.After == 0 || p.After > q.ToSeq+1) {
		p.After = q.ToSeq + 1
	}
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(ledgerBucket)
		if b == nil {
			return nil
		}
		it := seqIterator(tx, b, q)
		scanned := 0
		seq, ok := it.start(p.After, p.OldestFirst)
		for ; ok; seq, ok = it.step(p.OldestFirst) {
			if !q.InRange(seq) {
				if (p.OldestFirst && q.ToSeq != 0 && seq > q.ToSeq) || (!p.OldestFirst && seq < q.FromSeq) {
					return nil // past the range: done
				}
				continue
			}
			if scanned == DefaultSearchScan || len(recs) == p.Limit {
				next = prevSeq(seq, p.OldestFirst)
				return nil
			}
			scanned++
			v := b.Get(seqKey(seq))
			if v == nil {
				return fmt.Errorf("ledger index points at missing record %d: %w", seq, audit.ErrTampered)
			}
			e, err := audit.Decode(v)
			if err != nil {
				return fmt.Errorf("record %d: %w: %w", seq, audit.ErrTampered, err)
			}
			if q.Match(e) {
				recs = append(recs, audit.Record{Seq: seq, Raw: bytes.Clone(v)})
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("search ledger: %w", err)
	}
	return recs, next, nil
}

// prevSeq returns the cursor that resumes at seq: the sequence number just
// before it in the walk's direction.
func prevSeq(seq uint64, oldestFirst bool) uint64 {
	if oldestFirst {
		return seq - 1
	}
	return seq + 1
}

// seqWalker walks sequence numbers, from the ledger itself or an index.
type seqWalker struct {
	c      *bolt.Cursor
	prefix []byte // for ledger_by_ref keys: kind + ID + 0x00
}

// seqIterator picks the narrowest index for q.
func seqIterator(tx *bolt.Tx, ledger *bolt.Bucket, q audit.Query) *seqWalker {
	empty := func() *seqWalker { return &seqWalker{} }
	if !indexed(tx) {
		return &seqWalker{c: ledger.Cursor()}
	}
	nested := func(parent []byte, name string) *seqWalker {
		if p := tx.Bucket(parent); p != nil {
			if b := p.Bucket([]byte(name)); b != nil {
				return &seqWalker{c: b.Cursor()}
			}
		}
		return empty()
	}
	ref := func(kind byte, id string) *seqWalker {
		b := tx.Bucket(ledgerByRefBucket)
		if b == nil {
			return empty()
		}
		return &seqWalker{c: b.Cursor(), prefix: append(append([]byte{kind}, id...), 0)}
	}
	switch {
	case q.GrantID != "":
		return ref(refGrant, q.GrantID)
	case q.RefID != "":
		return ref(refRequest, q.RefID)
	case q.Identity != "":
		return nested(ledgerByIdentityBucket, q.Identity)
	case q.Entitlement != "":
		return nested(ledgerByEntitlementBucket, q.Entitlement)
	}
	return &seqWalker{c: ledger.Cursor()}
}

// start positions the walk just past after (0: at the first or last key)
// and returns the sequence number there.
func (w *seqWalker) start(after uint64, oldestFirst bool) (uint64, bool) {
	if w.c == nil {
		return 0, false
	}
	var k []byte
	switch {
	case oldestFirst:
		k, _ = w.c.Seek(w.key(after + 1))
	case after == 0 && w.prefix == nil:
		k, _ = w.c.Last()
	default:
		// Newest first: seek to the first key at or past after (or past
		// the prefix), then step back once.
		target := w.key(after)
		if after == 0 {
			target = append(bytes.Clone(w.prefix[:len(w.prefix)-1]), 1) // just past kind+ID+0x00…
		}
		if k, _ = w.c.Seek(target); k == nil {
			k, _ = w.c.Last()
		} else {
			k, _ = w.c.Prev()
		}
	}
	return w.seq(k)
}

func (w *seqWalker) step(oldestFirst bool) (uint64, bool) {
	var k []byte
	if oldestFirst {
		k, _ = w.c.Next()
	} else {
		k, _ = w.c.Prev()
	}
	return w.seq(k)
}

func (w *seqWalker) key(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(bytes.Clone(w.prefix), seq)
}

// seq decodes k, or reports the end of the walk (k outside the prefix or
// not a sequence number).
func (w *seqWalker) seq(k []byte) (uint64, bool) {
	if k == nil || len(k) != len(w.prefix)+8 || !bytes.HasPrefix(k, w.prefix) {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(w.prefix):]), true
}

// WriteSnapshot writes a consistent copy of the whole database file to w,
// from one read transaction (bbolt's Tx.WriteTo), while appends and other
// writes go on. It returns the number of bytes written. The copy is a
// complete bbolt file: open it with Open (ReadOnly) or give it to writ audit
// verify. The read transaction stays open until w has taken every byte, so
// a slow reader keeps the file from reusing freed pages meanwhile.
func (s *Store) WriteSnapshot(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("snapshot: %w", err)
	}
	return n, nil
}
