package boltstore_test

import (
	"testing"
	"time"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// BenchmarkTree measures, over a 10,000-record ledger written without a tree
// (an older data dir): building the tree at Open (migration), VerifyLog
// (chain + recomputed tree), and inclusion and consistency proofs.
func BenchmarkTree(b *testing.B) {
	const n = 10_000
	path := dbPath(b)
	seedLedger(b, path, n)
	start := time.Now()
	mustClose(b, mustOpenOnce(b, path))
	b.Logf("tree built at Open for %d records in %v", n, time.Since(start))
	s := mustOpen(b, path, boltstore.Options{ReadOnly: true})
	b.Run("VerifyLog", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			sum, err := audit.VerifyLog(b.Context(), s, nil, nil)
			if err != nil || sum.Records != n {
				b.Fatalf("VerifyLog() = %+v, %v", sum, err)
			}
		}
		b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "records/s")
	})
	b.Run("InclusionProof", func(b *testing.B) {
		i := int64(0)
		for b.Loop() {
			i = i%n + 1
			if _, err := audit.InclusionProof(b.Context(), s, i, n); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ConsistencyProof", func(b *testing.B) {
		i := int64(0)
		for b.Loop() {
			i = i%n + 1
			if _, err := audit.ConsistencyProof(b.Context(), s, i, n); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func mustOpenOnce(b *testing.B, path string) *boltstore.Store {
	b.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return s
}
