package jwtissuer_test

import (
	"testing"
	"time"
)

func BenchmarkIssue(b *testing.B) {
	for _, alg := range algorithms {
		b.Run(alg, func(b *testing.B) {
			iss, _ := newIssuer(b, alg, epoch)
			g := testGrant(epoch, 15*time.Minute)
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := iss.Issue(ctx, g); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
