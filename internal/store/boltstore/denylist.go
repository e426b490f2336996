package boltstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/approval"
)

// DeniedJTI is a revoked JWT: relying parties must refuse a token with
// this jti until Expires, after which its own exp refuses it.
type DeniedJTI struct {
	// JTI is the token's "jti" claim (the grant ID).
	JTI string
	// Expires is the token's "exp".
	Expires time.Time
}

// deniedRecord is the stored form of a DeniedJTI (the key is the jti).
type deniedRecord struct {
	V       int       `json:"v"`
	Expires time.Time `json:"expires"`
}

func decodeDenied(key, raw []byte) (DeniedJTI, error) {
	var rec deniedRecord
	if err := decodeRecord("denied jti "+string(key), raw, &rec, func() int { return rec.V }); err != nil {
		return DeniedJTI{}, err
	}
	return DeniedJTI{JTI: string(key), Expires: rec.Expires}, nil
}

// DenyJTI adds jti, which expires at exp, to the deny-list in the
// denied_jtis bucket. Denying a jti again keeps the later expiry. It
// returns an error wrapping approval.ErrInvalid if jti is empty.
func (s *Store) DenyJTI(ctx context.Context, jti string, exp time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deny jti %s: %w", jti, err)
	}
	if jti == "" {
		return fmt.Errorf("deny jti: empty jti: %w", approval.ErrInvalid)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return denyIn(tx, jti, exp) }); err != nil {
		return fmt.Errorf("deny jti %s: %w", jti, err)
	}
	return nil
}

// denyIn is DenyJTI inside the write transaction tx.
func denyIn(tx *bolt.Tx, jti string, exp time.Time) error {
	if jti == "" {
		return fmt.Errorf("empty jti: %w", approval.ErrInvalid)
	}
	key := []byte(jti)
	b, err := writeBucket(tx, deniedJTIsBucket)
	if err != nil {
		return err
	}
	if v := b.Get(key); v != nil {
		old, err := decodeDenied(key, v)
		if err != nil {
			return err
		}
		if !exp.After(old.Expires) {
			return nil
		}
	}
	raw, err := encodeRecord("denied jti", deniedRecord{V: recordVersion, Expires: exp})
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// DeniedJTIs returns the denied jtis that have not expired at now (Expires
// after now), ordered by JTI. Entries that have expired are then deleted
// in a separate write transaction (not on a read-only store); that cleanup
// is best effort, and one that fails is retried by the next call, so its
// error is not reported.
func (s *Store) DeniedJTIs(ctx context.Context, now time.Time) ([]DeniedJTI, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list denied jtis: %w", err)
	}
	var (
		live    []DeniedJTI
		expired [][]byte
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(deniedJTIsBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			d, err := decodeDenied(k, v)
			if err != nil {
				return err
			}
			if d.Expires.After(now) {
				live = append(live, d)
			} else {
				expired = append(expired, []byte(d.JTI))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list denied jtis: %w", err)
	}
	slices.SortFunc(live, func(a, b DeniedJTI) int { return cmp.Compare(a.JTI, b.JTI) })
	if len(expired) > 0 && !s.db.IsReadOnly() {
		_ = s.db.Update(func(tx *bolt.Tx) error {
			b, err := writeBucket(tx, deniedJTIsBucket)
			if err != nil {
				return err
			}
			for _, k := range expired {
				// Re-check: a DenyJTI in between may have extended it.
				v := b.Get(k)
				if v == nil {
					continue
				}
				if d, err := decodeDenied(k, v); err != nil || d.Expires.After(now) {
					continue
				}
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return live, nil
}
