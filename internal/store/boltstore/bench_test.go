package boltstore_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// BenchmarkAppend measures durable (fsynced) ledger appends through
// audit.Log on a real bbolt file. "serial" is one goroutine, so every append
// pays bbolt's batch delay and its own fsync; the parallel cases run
// 8 or 64 goroutines per GOMAXPROCS and show group commit.
func BenchmarkAppend(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		l := newLog(b, mustOpen(b, dbPath(b), boltstore.Options{}))
		ev := grant(1)
		start := time.Now()
		for b.Loop() {
			if _, err := l.Append(b.Context(), ev); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
	})
	for _, p := range []int{8, 64} {
		b.Run("parallel-"+strconv.Itoa(p), func(b *testing.B) {
			l := newLog(b, mustOpen(b, dbPath(b), boltstore.Options{}))
			ev := grant(1)
			b.SetParallelism(p)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Append(b.Context(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
		})
	}
}

// BenchmarkVerify measures Verify over a 10,000-record ledger read from a
// real bbolt file.
func BenchmarkVerify(b *testing.B) {
	const n = 10_000
	path := dbPath(b)
	seedLedger(b, path, n)
	s := mustOpen(b, path, boltstore.Options{ReadOnly: true})
	start := time.Now()
	for b.Loop() {
		sum, err := audit.Verify(b.Context(), s)
		if err != nil || sum.Records != n {
			b.Fatalf("Verify() = %+v, %v", sum, err)
		}
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "records/s")
}
