package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/approval"
)

var _ approval.Store = (*Store)(nil)

// requests is how approval.Requests are stored.
var requests = aggregate[approval.Request]{
	what:    "request",
	bucket:  requestsBucket,
	id:      func(r *approval.Request) string { return r.ID },
	version: func(r *approval.Request) *uint64 { return &r.Version },
	clone: func(r approval.Request) approval.Request {
		r.Reviews = slices.Clone(r.Reviews)
		return r
	},
	encode: func(r approval.Request) ([]byte, error) { return encodeRecord("request", toRequestRecord(r)) },
	decode: decodeRequest,
}

// CreateRequest implements approval.Store. It stores r with Version 1
// (whatever r.Version says) and returns an error wrapping
// approval.ErrConflict if a request with r.ID exists, or approval.ErrInvalid
// if r.ID is empty.
func (s *Store) CreateRequest(ctx context.Context, r approval.Request) error {
	return requests.create(ctx, s.db, r)
}

// GetRequest implements approval.Store. It returns an error wrapping
// approval.ErrNotFound if there is no request with that id, or
// ErrCorruptRecord if its record is unreadable.
func (s *Store) GetRequest(ctx context.Context, id string) (approval.Request, error) {
	return requests.get(ctx, s.db, id)
}

// UpdateRequest implements approval.Store. The read, fn and the write run
// in one bbolt write transaction, and bbolt runs one writer at a time, so
// no other write can interleave: this is the compare-and-swap, and fn runs
// exactly once per call. (The etcd backend does the same with a
// Txn(If(ModRevision(key) = read revision)) and reruns fn when the compare
// fails.)
//
// fn gets a freshly decoded copy. If fn returns an error, UpdateRequest
// writes nothing and returns that error unchanged. Otherwise it stores the
// copy with Version one above the stored one (fn's change to Version is
// ignored) and returns the stored request. It returns an error wrapping
// approval.ErrNotFound if there is no such request, approval.ErrInvalid if
// fn changed the ID, or ErrCorruptRecord if the stored record is
// unreadable.
func (s *Store) UpdateRequest(ctx context.Context, id string, fn func(*approval.Request) error) (approval.Request, error) {
	return requests.update(ctx, s.db, id, fn)
}

// ListRequests implements approval.Store: the requests matching f, newest
// (by CreatedAt, then ID) first, at most f.Limit of them if it is positive.
// It reads every request in one read transaction, which is fine for the
// thousands of requests a single broker holds; an index by state would be
// the next step. A corrupt record fails the whole list (ErrCorruptRecord).
func (s *Store) ListRequests(ctx context.Context, f approval.Filter) ([]approval.Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list requests: %w", err)
	}
	var out []approval.Request
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = listRequestsIn(tx, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", err)
	}
	return out, nil
}

// listRequestsIn is ListRequests inside tx.
func listRequestsIn(tx *bolt.Tx, f approval.Filter) ([]approval.Request, error) {
	var out []approval.Request
	if b := tx.Bucket(requestsBucket); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			r, err := decodeRequest(k, v)
			if err != nil {
				return err
			}
			if matches(r, f) {
				out = append(out, r)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b approval.Request) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// matches reports whether r passes f.
func matches(r approval.Request, f approval.Filter) bool {
	switch {
	case len(f.States) > 0 && !slices.Contains(f.States, r.State):
		return false
	case f.Requester != "" && r.Requester != f.Requester:
		return false
	case f.Beneficiary != "" && r.Beneficiary != f.Beneficiary:
		return false
	case f.Entitlement != "" && r.Entitlement != f.Entitlement:
		return false
	}
	return true
}

// AddGrant implements approval.Store. In one write transaction it reads
// the request (for its beneficiary), stores g under requestID/grantID and
// indexes it by beneficiary and issue time. It returns an error wrapping
// approval.ErrNotFound if the request does not exist, approval.ErrConflict
// if the grant is already recorded, or approval.ErrInvalid if an ID is
// empty or the grant ID contains "/".
func (s *Store) AddGrant(ctx context.Context, g approval.GrantRecord) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add grant %s: %w", g.GrantID, err)
	}
	if g.GrantID == "" || g.RequestID == "" || strings.Contains(g.GrantID, "/") {
		return fmt.Errorf("add grant %q to request %q: grant id must be non-empty without '/', request id non-empty: %w", g.GrantID, g.RequestID, approval.ErrInvalid)
	}
	err := s.db.Update(func(tx *bolt.Tx) error { return addGrantIn(tx, g) })
	if err != nil {
		return fmt.Errorf("add grant %s to request %s: %w", g.GrantID, g.RequestID, err)
	}
	return nil
}

// addGrantIn is AddGrant inside the write transaction tx, after the checks
// of its arguments.
func addGrantIn(tx *bolt.Tx, g approval.GrantRecord) error {
	gkey := grantKey(g.RequestID, g.GrantID)
	rb, err := writeBucket(tx, requestsBucket)
	if err != nil {
		return err
	}
	gb, err := writeBucket(tx, grantsBucket)
	if err != nil {
		return err
	}
	ib, err := writeBucket(tx, grantsByBenefBucket)
	if err != nil {
		return err
	}
	req, err := getRequest(rb, g.RequestID)
	if err != nil {
		return err
	}
	if strings.ContainsRune(string(req.Beneficiary), 0) {
		return fmt.Errorf("beneficiary contains NUL: %w", approval.ErrInvalid)
	}
	ikey := beneficiaryKey(req.Beneficiary, g.IssuedAt, g.GrantID)
	if gb.Get(gkey) != nil || ib.Get(ikey) != nil {
		return fmt.Errorf("grant already recorded: %w", approval.ErrConflict)
	}
	raw, err := encodeRecord("grant", toGrantRecord(g, req.Beneficiary))
	if err != nil {
		return err
	}
	if err := gb.Put(gkey, raw); err != nil {
		return err
	}
	return ib.Put(ikey, gkey)
}

// Grants implements approval.Store: the grants recorded under requestID,
// oldest (by IssuedAt, then GrantID) first. It returns an error wrapping
// approval.ErrNotFound if the request does not exist.
func (s *Store) Grants(ctx context.Context, requestID string) ([]approval.GrantRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list grants of %s: %w", requestID, err)
	}
	var out []approval.GrantRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = grantsIn(tx, requestID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list grants of %s: %w", requestID, err)
	}
	return out, nil
}

// grantsIn is Grants inside tx.
func grantsIn(tx *bolt.Tx, requestID string) ([]approval.GrantRecord, error) {
	var out []approval.GrantRecord
	if _, err := getRequest(tx.Bucket(requestsBucket), requestID); err != nil {
		return nil, err
	}
	err := func() error {
		gb := tx.Bucket(grantsBucket)
		if gb == nil {
			return nil
		}
		prefix := grantKey(requestID, "")
		c := gb.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if bytes.IndexByte(k[len(prefix):], '/') >= 0 {
				continue // a grant of request requestID + "/…"
			}
			rec, err := decodeGrant(k, v)
			if err != nil {
				return err
			}
			out = append(out, rec.grant())
		}
		return nil
	}()
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b approval.GrantRecord) int {
		if c := a.IssuedAt.Compare(b.IssuedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.GrantID, b.GrantID)
	})
	return out, nil
}

// GrantsFor implements approval.Store: the grants minted for beneficiary
// at or after since (zero: any time), newest first, at most limit of them
// if limit is positive. It walks the grants_by_beneficiary index backwards
// from the newest entry and stops at since or limit.
func (s *Store) GrantsFor(ctx context.Context, beneficiary approval.Principal, since time.Time, limit int) ([]approval.GrantRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list grants for %s: %w", beneficiary, err)
	}
	if beneficiary == "" || strings.ContainsRune(string(beneficiary), 0) {
		return nil, nil
	}
	var out []approval.GrantRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = grantsForIn(tx, beneficiary, since, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list grants for %s: %w", beneficiary, err)
	}
	return out, nil
}

// grantsForIn is GrantsFor inside tx.
func grantsForIn(tx *bolt.Tx, beneficiary approval.Principal, since time.Time, limit int) ([]approval.GrantRecord, error) {
	if beneficiary == "" || strings.ContainsRune(string(beneficiary), 0) {
		return nil, nil
	}
	var out []approval.GrantRecord
	err := func() error {
		ib, gb := tx.Bucket(grantsByBenefBucket), tx.Bucket(grantsBucket)
		if ib == nil || gb == nil {
			return nil
		}
		prefix := append([]byte(beneficiary), 0)
		upper := append([]byte(beneficiary), 1)
		c := ib.Cursor()
		// Seek lands on the first key after the beneficiary's range (or
		// nothing); step back to its newest entry.
		var k, v []byte
		if after, _ := c.Seek(upper); after == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			if limit > 0 && len(out) == limit {
				return nil
			}
			rest := k[len(prefix):]
			if len(rest) < 8 {
				return fmt.Errorf("index key %q is too short: %w", k, ErrCorruptRecord)
			}
			if !since.IsZero() && decodeTime(rest[:8]).Before(since) {
				return nil
			}
			raw := gb.Get(v)
			if raw == nil {
				return fmt.Errorf("index key %q points at missing grant %q: %w", k, v, ErrCorruptRecord)
			}
			rec, err := decodeGrant(v, raw)
			if err != nil {
				return err
			}
			out = append(out, rec.grant())
		}
		return nil
	}()
	return out, err
}

// getRequest reads and decodes request id from b, which may be nil (a
// read-only file that never had the bucket).
func getRequest(b *bolt.Bucket, id string) (approval.Request, error) {
	return requests.getIn(b, id)
}

// writeBucket returns the named bucket of a write transaction. Open
// creates every bucket, so a missing one means the file was opened
// read-only or damaged.
func writeBucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("bucket %s missing", name)
	}
	return b, nil
}

// grantKey is the grants bucket key: requestID + "/" + grantID. Grant IDs
// never contain "/", so the last "/" splits the key unambiguously.
func grantKey(requestID, grantID string) []byte {
	return []byte(requestID + "/" + grantID)
}

// beneficiaryKey is the grants_by_beneficiary key: beneficiary, NUL, the
// issue time (encodeTime) and the grant ID, so that one beneficiary's
// entries are contiguous and in issue-time order.
func beneficiaryKey(beneficiary approval.Principal, issued time.Time, grantID string) []byte {
	k := append([]byte(beneficiary), 0)
	k = append(k, encodeTime(issued)...)
	return append(k, grantID...)
}

// encodeTime is t's Unix nanoseconds, big-endian, with the sign bit
// flipped so that byte order is time order across the whole int64 range.
func encodeTime(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^(1<<63))
}

// decodeTime reverses encodeTime (in UTC).
func decodeTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63))).UTC()
}
