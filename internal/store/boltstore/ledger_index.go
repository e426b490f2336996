package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/internal/audit"
)

// Ledger indexes. They are written in the append's own transaction
// (indexAppended), so they are never ahead of or behind the ledger, and
// rebuilt at a writable Open when the file predates them (migrateIndexes).
var (
	// ledgerByIdentityBucket holds one nested bucket per principal (actor or
	// subject); each maps the 8-byte sequence numbers of that principal's
	// records to nothing.
	ledgerByIdentityBucket = []byte("ledger_by_identity")
	// ledgerByEntitlementBucket is the same per entitlement name.
	ledgerByEntitlementBucket = []byte("ledger_by_entitlement")
	// ledgerByRefBucket maps kind + ID + 0x00 + 8-byte sequence number to
	// nothing, where kind is 'g' for a grant ID and 'r' for an access
	// request or break-glass ID (Details "request_id", "break_glass_id").
	ledgerByRefBucket = []byte("ledger_by_ref")

	// indexVersionKey (in meta) records that every ledger record is indexed
	// in the buckets above; absent on files written before them.
	indexVersionKey = []byte("ledger_index_version")
)

// indexVersion is the layout of the ledger indexes; a file whose
// meta/ledger_index_version differs is reindexed at a writable Open.
const indexVersion uint64 = 1

// appendFill is the FillPercent of buckets whose keys only ever grow
// (the ledger, and the per-principal and per-entitlement buckets keyed by
// sequence number). bbolt's default (0.5) splits pages half full, and an
// append-only bucket never fills them again: the ledger's leaf pages were
// 43 % full (docs/BENCHMARKS.md).
const appendFill = 1.0

const (
	refGrant   = 'g'
	refRequest = 'r'
)

// indexAppended is called in the append's write transaction right after
// record e is put: it marks the ledger bucket append-only (FillPercent) and
// writes e's index entries. It does not touch the ledger record itself.
func indexAppended(tx *bolt.Tx, e audit.Entry) error {
	if b := tx.Bucket(ledgerBucket); b != nil {
		b.FillPercent = appendFill
	}
	return indexEntry(tx, e)
}

// indexEntry writes e's index entries. Puts are idempotent, so reindexing a
// record is harmless.
func indexEntry(tx *bolt.Tx, e audit.Entry) error {
	seq := seqKey(e.Seq)
	for _, id := range principals(e) {
		if err := putSeq(tx, ledgerByIdentityBucket, id, seq); err != nil {
			return fmt.Errorf("index record %d by identity: %w", e.Seq, err)
		}
	}
	if e.Entitlement != "" {
		if err := putSeq(tx, ledgerByEntitlementBucket, e.Entitlement, seq); err != nil {
			return fmt.Errorf("index record %d by entitlement: %w", e.Seq, err)
		}
	}
	refs, err := tx.CreateBucketIfNotExists(ledgerByRefBucket)
	if err != nil {
		return fmt.Errorf("index record %d: %w", e.Seq, err)
	}
	if e.GrantID != "" {
		if err := refs.Put(refKey(refGrant, e.GrantID, e.Seq), nil); err != nil {
			return fmt.Errorf("index record %d by grant: %w", e.Seq, err)
		}
	}
	for _, id := range e.RefIDs() {
		if err := refs.Put(refKey(refRequest, id, e.Seq), nil); err != nil {
			return fmt.Errorf("index record %d by request: %w", e.Seq, err)
		}
	}
	return nil
}

// principals returns e's actor and subject, once each, without empties.
func principals(e audit.Entry) []string {
	switch {
	case e.Actor == "" && e.Subject == "":
		return nil
	case e.Actor == "" || e.Actor == e.Subject:
		return []string{e.Subject}
	case e.Subject == "":
		return []string{e.Actor}
	}
	return []string{e.Actor, e.Subject}
}

// putSeq puts seq into parent's nested bucket name, creating both.
func putSeq(tx *bolt.Tx, parent []byte, name string, seq []byte) error {
	p, err := tx.CreateBucketIfNotExists(parent)
	if err != nil {
		return err
	}
	b, err := p.CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return err
	}
	b.FillPercent = appendFill
	return b.Put(seq, nil)
}

// refKey returns kind + id + 0x00 + seq.
func refKey(kind byte, id string, seq uint64) []byte {
	k := make([]byte, 0, 1+len(id)+1+8)
	k = append(k, kind)
	k = append(k, id...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// indexed reports whether tx's file has complete ledger indexes.
func indexed(tx *bolt.Tx) bool {
	m := tx.Bucket(metaBucket)
	if m == nil {
		return false
	}
	v := m.Get(indexVersionKey)
	return len(v) == 8 && binary.BigEndian.Uint64(v) == indexVersion
}

// headIndexed reports whether the ledger's last record has its index
// entries, which catches records added by something other than this store
// (another tool, an older writd) after the indexes were built.
func headIndexed(tx *bolt.Tx) bool {
	b := tx.Bucket(ledgerBucket)
	if b == nil {
		return true
	}
	k, v := b.Cursor().Last()
	if k == nil {
		return true
	}
	e, err := audit.Decode(v)
	if err != nil {
		return true // unreadable: nothing to index; Verify reports it
	}
	has := func(parent []byte, name string) bool {
		p := tx.Bucket(parent)
		if p == nil {
			return false
		}
		nb := p.Bucket([]byte(name))
		return nb != nil && hasKey(nb, k)
	}
	switch {
	case e.GrantID != "":
		refs := tx.Bucket(ledgerByRefBucket)
		return refs != nil && hasKey(refs, refKey(refGrant, e.GrantID, e.Seq))
	case len(principals(e)) > 0:
		return has(ledgerByIdentityBucket, principals(e)[0])
	case e.Entitlement != "":
		return has(ledgerByEntitlementBucket, e.Entitlement)
	}
	return true
}

// indexMigrateChunk is how many records one migration transaction indexes.
const indexMigrateChunk = 10000

// migrateIndexes indexes every ledger record of a file written before the
// indexes existed (or by an older index layout), in transactions of
// indexMigrateChunk records, then records indexVersion. A crash part-way leaves
// the version unset, and the next Open starts over; puts are idempotent.
// A record that does not decode is left unindexed: Verify reports it.
func migrateIndexes(db *bolt.DB) error {
	done := false
	if err := db.View(func(tx *bolt.Tx) error { done = indexed(tx) && headIndexed(tx); return nil }); err != nil || done {
		return err
	}
	var after []byte
	for {
		var last []byte
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(ledgerBucket)
			if b == nil {
				return nil
			}
			c := b.Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for n := 0; k != nil && n < indexMigrateChunk; k, v = c.Next() {
				n++
				last = bytes.Clone(k)
				e, err := audit.Decode(v)
				if err != nil || len(k) != 8 || e.Seq != binary.BigEndian.Uint64(k) {
					continue
				}
				if err := indexEntry(tx, e); err != nil {
					return err
				}
				// AppendEntry keeps ledger_by_grant itself; older files
				// may lack it.
				if ib := tx.Bucket(ledgerByGrantBucket); ib != nil && e.GrantID != "" && e.CredentialRef != "" {
					if err := ib.Put([]byte(e.GrantID), seqKey(e.Seq)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index ledger: %w", err)
		}
		if last == nil {
			break
		}
		after = last
	}
	return db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		return m.Put(indexVersionKey, binary.BigEndian.AppendUint64(nil, indexVersion))
	})
}

// hasKey reports whether b holds k (whose value may be empty).
func hasKey(b *bolt.Bucket, k []byte) bool {
	got, _ := b.Cursor().Seek(k)
	return bytes.Equal(got, k)
}
