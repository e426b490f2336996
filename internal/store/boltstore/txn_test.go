package boltstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/store/storetest"
)

func TestStore_TxSuite(t *testing.T) {
	t.Parallel()
	storetest.RunTxSuite(t, func(t *testing.T) storetest.TxBackend {
		s := mustOpen(t, dbPath(t), boltstore.Options{})
		return storetest.TxBackend{
			Committer: s, Store: s, BreakGlass: s, Ledger: s, Queue: s.Revocations(),
			Denied: func(ctx context.Context, now time.Time) ([]string, error) {
				list, err := s.DeniedJTIs(ctx, now)
				var out []string
				for _, d := range list {
					out = append(out, d.JTI)
				}
				return out, err
			},
		}
	})
}
