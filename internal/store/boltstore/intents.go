package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
)

// intentRecord is the stored form of an approval.Intent.
type intentRecord struct {
	V           int       `json:"v"`
	GrantID     string    `json:"grant_id"`
	Kind        string    `json:"kind"`
	Role        string    `json:"role,omitempty"`
	Path        string    `json:"path,omitempty"`
	Principal   string    `json:"principal"`
	Entitlement string    `json:"entitlement"`
	RequestID   string    `json:"request_id,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	NotAfter    time.Time `json:"not_after"`
}

func toIntentRecord(in approval.Intent) intentRecord {
	return intentRecord{V: recordVersion, GrantID: in.GrantID, Kind: string(in.Recipe.Kind), Role: in.Recipe.Role, Path: in.Recipe.Path,
		Principal: string(in.Principal), Entitlement: in.Entitlement, RequestID: in.RequestID, CreatedAt: in.CreatedAt, NotAfter: in.NotAfter}
}

func (rec intentRecord) intent() approval.Intent {
	return approval.Intent{GrantID: rec.GrantID, Recipe: approval.Recipe{Kind: approval.CredentialKind(rec.Kind), Role: rec.Role, Path: rec.Path},
		Principal: approval.Principal(rec.Principal), Entitlement: rec.Entitlement, RequestID: rec.RequestID, CreatedAt: rec.CreatedAt, NotAfter: rec.NotAfter}
}

// BeginIntent durably records in (fsynced) before the broker asks Vault to
// mint. Concurrent calls share one commit (bbolt's Batch). An intent with
// the same grant ID is replaced. It returns an error wrapping
// approval.ErrInvalid if in.GrantID is empty.
func (s *Store) BeginIntent(ctx context.Context, in approval.Intent) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("begin intent %s: %w", in.GrantID, err)
	}
	if in.GrantID == "" {
		return fmt.Errorf("begin intent: empty grant id: %w", approval.ErrInvalid)
	}
	raw, err := encodeRecord("intent", toIntentRecord(in))
	if err != nil {
		return fmt.Errorf("begin intent %s: %w", in.GrantID, err)
	}
	err = s.commitIntent(func(tx *bolt.Tx) error {
		b, err := writeBucket(tx, intentsBucket)
		if err != nil {
			return err
		}
		return b.Put([]byte(in.GrantID), raw)
	})
	if err != nil {
		return fmt.Errorf("begin intent %s: %w", in.GrantID, err)
	}
	return nil
}

// commitIntent commits fn at once when no other intent write is in
// progress, and group-commits with the others otherwise (as AppendEntry
// does), so an idle broker pays one fsync and no batch delay.
func (s *Store) commitIntent(fn func(*bolt.Tx) error) error {
	commit := s.batch
	if s.intenting.Add(1) == 1 {
		commit = s.update
	}
	defer s.intenting.Add(-1)
	return commit(fn)
}

// ClearIntent removes the intent of grantID, if any: its outcome is in the
// ledger, or nothing minted under it can still be live.
func (s *Store) ClearIntent(ctx context.Context, grantID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("clear intent %s: %w", grantID, err)
	}
	err := s.commitIntent(func(tx *bolt.Tx) error {
		b, err := writeBucket(tx, intentsBucket)
		if err != nil {
			return err
		}
		return b.Delete([]byte(grantID))
	})
	if err != nil {
		return fmt.Errorf("clear intent %s: %w", grantID, err)
	}
	return nil
}

// Intents returns every intent not yet cleared, oldest first. A corrupt
// record fails the call (ErrCorruptRecord) rather than being skipped: an
// unreadable intent may hide a live credential.
func (s *Store) Intents(ctx context.Context) ([]approval.Intent, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list intents: %w", err)
	}
	var out []approval.Intent
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(intentsBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var rec intentRecord
			if err := decodeRecord("intent "+string(k), v, &rec, func() int { return rec.V }); err != nil {
				return err
			}
			if rec.GrantID != string(k) {
				return fmt.Errorf("decode intent %s: record holds grant %q: %w", k, rec.GrantID, ErrCorruptRecord)
			}
			out = append(out, rec.intent())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list intents: %w", err)
	}
	slices.SortStableFunc(out, func(a, b approval.Intent) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// RecordedRefsSince returns the credential references (jti, accessor,
// lease ID) of the ledger entries appended at or after since, reading the
// ledger backwards from its head and stopping at the first entry older
// than since minus slack (clock steps). The reconciler uses it to tell a
// recorded Vault lease from an orphan.
func (s *Store) RecordedRefsSince(ctx context.Context, since time.Time, slack time.Duration) (map[string]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("recent ledger refs: %w", err)
	}
	refs := map[string]bool{}
	stop := since.Add(-slack)
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(ledgerBucket)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if len(k) != 8 || v == nil {
				return fmt.Errorf("ledger key %x is not a record: %w", k, audit.ErrTampered)
			}
			e, err := audit.Decode(bytes.Clone(v))
			if err != nil {
				return fmt.Errorf("ledger record %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if e.Time.Before(stop) {
				return nil
			}
			if e.CredentialRef != "" && !e.Time.Before(since) {
				refs[e.CredentialRef] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recent ledger refs: %w", err)
	}
	return refs, nil
}
