package boltstore

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/internal/revoke"
)

// QueuedRevocations returns every item of the revocation queue, due or
// not, without claiming any. It works on a read-only store, for offline
// checks (the crash harness, an operator's inspection).
func (s *Store) QueuedRevocations(ctx context.Context) ([]revoke.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list queued revocations: %w", err)
	}
	var out []revoke.Item
	err := s.view(func(tx *bolt.Tx) error {
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
		return nil, fmt.Errorf("list queued revocations: %w", err)
	}
	return out, nil
}
