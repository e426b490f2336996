package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/writ-dev/writ/internal/audit"
)

// rewrite decodes raw, applies edit, optionally recomputes the entry's own
// hash (as a forger would), and re-encodes it.
func rewrite(t *testing.T, raw []byte, rehash bool, edit func(*audit.Entry)) []byte {
	t.Helper()
	e, err := audit.Decode(raw)
	if err != nil {
		t.Fatalf("Decode() err = %v", err)
	}
	edit(&e)
	if rehash {
		e.Hash = e.ComputeHash()
	}
	out, err := audit.Encode(e)
	if err != nil {
		t.Fatalf("Encode() err = %v", err)
	}
	return out
}

// without returns recs minus the records with the given keys.
func without(recs []memRecord, keys ...uint64) []memRecord {
	var out []memRecord
next:
	for _, r := range recs {
		for _, k := range keys {
			if r.key == k {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

func TestVerify(t *testing.T) {
	t.Parallel()
	const n = 10
	tests := []struct {
		name        string
		records     int // size of the valid chain to start from
		tamper      func(t *testing.T, recs []memRecord) []memRecord
		wantRecords uint64 // records verified
		wantSeq     uint64 // ChainError.Seq; 0 means Verify succeeds
	}{
		{
			name:        "valid chain",
			records:     n,
			wantRecords: n,
		},
		{
			name:    "empty ledger",
			records: 0,
		},
		{
			name:    "deleted first record",
			records: n,
			tamper:  func(_ *testing.T, r []memRecord) []memRecord { return without(r, 1) },
			wantSeq: 1,
		},
		{
			name:        "deleted middle record",
			records:     n,
			tamper:      func(_ *testing.T, r []memRecord) []memRecord { return without(r, 5) },
			wantRecords: 4,
			wantSeq:     5,
		},
		{
			name:        "deleted run of records",
			records:     n,
			tamper:      func(_ *testing.T, r []memRecord) []memRecord { return without(r, 5, 6, 7) },
			wantRecords: 4,
			wantSeq:     5,
		},
		{
			// Truncation is undetectable without an external checkpoint
			// (see doc.go): the shorter chain is valid.
			name:        "deleted last record is not detected",
			records:     n,
			tamper:      func(_ *testing.T, r []memRecord) []memRecord { return without(r, n) },
			wantRecords: n - 1,
		},
		{
			name:    "values of keys 4 and 7 swapped",
			records: n,
			tamper: func(_ *testing.T, r []memRecord) []memRecord {
				r[3].raw, r[6].raw = r[6].raw, r[3].raw
				return r
			},
			wantRecords: 3,
			wantSeq:     4,
		},
		{
			name:    "keys 3 and 4 yielded out of order",
			records: n,
			tamper: func(_ *testing.T, r []memRecord) []memRecord {
				r[2], r[3] = r[3], r[2]
				return r
			},
			wantRecords: 2,
			wantSeq:     3,
		},
		{
			name:    "duplicate key 3",
			records: n,
			tamper: func(_ *testing.T, r []memRecord) []memRecord {
				return append(r[:3:3], append([]memRecord{r[2]}, r[3:]...)...)
			},
			wantRecords: 3,
			wantSeq:     4,
		},
		{
			name:    "key 4 holds a copy of record 3",
			records: n,
			tamper: func(_ *testing.T, r []memRecord) []memRecord {
				r[3].raw = r[2].raw
				return r
			},
			wantRecords: 3,
			wantSeq:     4,
		},
		{
			name:    "record 6 prev hash replaced, own hash recomputed",
			records: n,
			tamper: func(t *testing.T, r []memRecord) []memRecord {
				r[5].raw = rewrite(t, r[5].raw, true, func(e *audit.Entry) { e.PrevHash = strings.Repeat("ab", 32) })
				return r
			},
			wantRecords: 5,
			wantSeq:     6,
		},
		{
			name:    "record 1 prev hash not zero, own hash recomputed",
			records: n,
			tamper: func(t *testing.T, r []memRecord) []memRecord {
				r[0].raw = rewrite(t, r[0].raw, true, func(e *audit.Entry) { e.PrevHash = strings.Repeat("ab", 32) })
				return r
			},
			wantSeq: 1,
		},
		{
			name:    "record 6 reason edited, hash kept",
			records: n,
			tamper: func(t *testing.T, r []memRecord) []memRecord {
				r[5].raw = rewrite(t, r[5].raw, false, func(e *audit.Entry) { e.Reason = "nothing to see" })
				return r
			},
			wantRecords: 5,
			wantSeq:     6,
		},
		{
			// Record 6 is self-consistent, so the break shows at 7, whose
			// PrevHash still names the original record 6.
			name:    "record 6 reason edited, own hash recomputed",
			records: n,
			tamper: func(t *testing.T, r []memRecord) []memRecord {
				r[5].raw = rewrite(t, r[5].raw, true, func(e *audit.Entry) { e.Reason = "nothing to see" })
				return r
			},
			wantRecords: 6,
			wantSeq:     7,
		},
		{
			// A forger who rewrites the last record can always recompute its
			// hash: only an external checkpoint of the head detects this.
			name:    "last record edited, own hash recomputed is not detected",
			records: n,
			tamper: func(t *testing.T, r []memRecord) []memRecord {
				r[n-1].raw = rewrite(t, r[n-1].raw, true, func(e *audit.Entry) { e.Reason = "nothing to see" })
				return r
			},
			wantRecords: n,
		},
		{
			name:    "record 3 seq edited, own hash recomputed",
			records: n,
			tamper: func(t *testing.T, r []memRecord) []memRecord {
				r[2].raw = rewrite(t, r[2].raw, true, func(e *audit.Entry) { e.Seq = 30 })
				return r
			},
			wantRecords: 2,
			wantSeq:     3,
		},
		{
			name:    "record 8 not JSON",
			records: n,
			tamper: func(_ *testing.T, r []memRecord) []memRecord {
				r[7].raw = []byte("garbage")
				return r
			},
			wantRecords: 7,
			wantSeq:     8,
		},
		{
			name:    "record 8 empty",
			records: n,
			tamper: func(_ *testing.T, r []memRecord) []memRecord {
				r[7].raw = nil
				return r
			},
			wantRecords: 7,
			wantSeq:     8,
		},
		{
			name:    "record 2 has extra whitespace",
			records: n,
			tamper: func(_ *testing.T, r []memRecord) []memRecord {
				r[1].raw = bytes.Replace(r[1].raw, []byte(`,"seq"`), []byte(`, "seq"`), 1)
				return r
			},
			wantRecords: 1,
			wantSeq:     2,
		},
		{
			name:    "key 0 before record 1",
			records: n,
			tamper: func(_ *testing.T, r []memRecord) []memRecord {
				return append([]memRecord{{key: 0, raw: r[0].raw}}, r...)
			},
			wantSeq: 1,
		},
		{
			name:    "chain starts at 2 after renumbering",
			records: n,
			tamper: func(t *testing.T, r []memRecord) []memRecord {
				for i := range r {
					r[i].key++
					r[i].raw = rewrite(t, r[i].raw, true, func(e *audit.Entry) { e.Seq++ })
				}
				return r
			},
			wantSeq: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newChain(t, tt.records)
			if tt.tamper != nil {
				s.recs = tt.tamper(t, s.recs)
			}
			sum, err := audit.Verify(t.Context(), s)
			if sum.Records != tt.wantRecords {
				t.Errorf("Verify().Records = %d, want %d", sum.Records, tt.wantRecords)
			}
			checkChainErr(t, err, tt.wantSeq)
		})
	}
}

// checkChainErr fails t unless err is nil (wantSeq 0) or a *ChainError at
// wantSeq that wraps ErrTampered.
func checkChainErr(t *testing.T, err error, wantSeq uint64) {
	t.Helper()
	if wantSeq == 0 {
		if err != nil {
			t.Errorf("Verify() err = %v, want nil", err)
		}
		return
	}
	ce, ok := errors.AsType[*audit.ChainError](err)
	if !ok {
		t.Fatalf("Verify() err = %v, want *ChainError at %d", err, wantSeq)
	}
	if ce.Seq != wantSeq {
		t.Errorf("Verify() err = %v, want ChainError.Seq %d", err, wantSeq)
	}
	if !errors.Is(err, audit.ErrTampered) {
		t.Errorf("Verify() err = %v, want errors.Is ErrTampered", err)
	}
	if want := fmt.Sprintf("ledger: record %d: ", wantSeq); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Verify() err = %q, want prefix %q", err, want)
	}
}

// TestVerify_FlippedByte flips one byte at every field of record 5 (the
// field name's first letter and its value's first byte) and expects
// Verify to blame record 5 every time.
func TestVerify_FlippedByte(t *testing.T) {
	t.Parallel()
	const target = 5
	raw := newChain(t, 8).recs[target-1].raw
	fields := []string{
		"v", "seq", "time", "action", "actor", "subject", "entitlement", "rule",
		"outcome", "reason", "grant_id", "ttl_ns", "credential_kind",
		"credential_ref", "expires", "prev_hash", "hash",
	}
	type flip struct {
		name string
		pos  int
	}
	var flips []flip
	for _, f := range fields {
		i := bytes.Index(raw, []byte(`"`+f+`":`))
		if i < 0 {
			t.Fatalf("field %q not in record %s", f, raw)
		}
		valueStart := i + len(f) + 3
		flips = append(flips,
			flip{f + " name", i + 1},
			flip{f + " value first byte", valueStart},
			flip{f + " value second byte", valueStart + 1},
		)
	}
	flips = append(flips, flip{"opening brace", 0}, flip{"closing brace", len(raw) - 1})
	for _, fl := range flips {
		for _, mask := range []byte{0x01, 0x20, 0x80} {
			t.Run(fmt.Sprintf("%s xor %#x", fl.name, mask), func(t *testing.T) {
				t.Parallel()
				s := newChain(t, 8)
				s.recs[target-1].raw[fl.pos] ^= mask
				_, err := audit.Verify(t.Context(), s)
				checkChainErr(t, err, target)
			})
		}
	}
}

func TestVerify_StoreErrors(t *testing.T) {
	t.Parallel()
	errDisk := errors.New("disk on fire")
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		scanErr error
		wantErr error
	}{
		{"store error is wrapped", t.Context(), errDisk, errDisk},
		{"canceled context", canceled, nil, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newChain(t, 3)
			s.scanErr = tt.scanErr
			_, err := audit.Verify(tt.ctx, s)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() err = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, audit.ErrTampered) {
				t.Errorf("Verify() err = %v, want not ErrTampered", err)
			}
		})
	}
}
