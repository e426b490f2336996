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

var _ approval.BreakGlassStore = (*Store)(nil)

// breakGlasses is how approval.BreakGlass uses are stored.
var breakGlasses = aggregate[approval.BreakGlass]{
	what:    "break-glass",
	bucket:  breakGlassBucket,
	id:      func(bg *approval.BreakGlass) string { return bg.ID },
	version: func(bg *approval.BreakGlass) *uint64 { return &bg.Version },
	clone: func(bg approval.BreakGlass) approval.BreakGlass {
		bg.Reviews = slices.Clone(bg.Reviews)
		return bg
	},
	encode: func(bg approval.BreakGlass) ([]byte, error) {
		return encodeRecord("break-glass", toBreakGlassRecord(bg))
	},
	decode: decodeBreakGlass,
}

// breakGlassRecord is the stored form of an approval.BreakGlass.
type breakGlassRecord struct {
	V           int                      `json:"v"`
	Version     uint64                   `json:"version"`
	ID          string                   `json:"id"`
	Taker       string                   `json:"taker"`
	Beneficiary string                   `json:"beneficiary"`
	Entitlement string                   `json:"entitlement"`
	Reason      string                   `json:"reason"`
	Incident    string                   `json:"incident,omitempty"`
	GrantID     string                   `json:"grant_id,omitempty"`
	Credential  refRecord                `json:"credential"`
	TakenAt     time.Time                `json:"taken_at"`
	ReviewDue   time.Time                `json:"review_due"`
	State       string                   `json:"state"`
	Reviews     []breakGlassReviewRecord `json:"reviews,omitempty"`
	Outcome     string                   `json:"outcome,omitempty"`
	ClosedAt    time.Time                `json:"closed_at"`
	EscalatedAt time.Time                `json:"escalated_at"`
}

// breakGlassReviewRecord is the stored form of an approval.BreakGlassReview.
type breakGlassReviewRecord struct {
	Reviewer string    `json:"reviewer"`
	Groups   []string  `json:"groups,omitempty"`
	Outcome  string    `json:"outcome"`
	Notes    string    `json:"notes,omitempty"`
	At       time.Time `json:"at"`
}

func toBreakGlassRecord(bg approval.BreakGlass) breakGlassRecord {
	rec := breakGlassRecord{
		V:           recordVersion,
		Version:     bg.Version,
		ID:          bg.ID,
		Taker:       string(bg.Taker),
		Beneficiary: string(bg.Beneficiary),
		Entitlement: bg.Entitlement,
		Reason:      bg.Reason,
		Incident:    bg.Incident,
		GrantID:     bg.GrantID,
		Credential:  toRefRecord(bg.Credential),
		TakenAt:     bg.TakenAt,
		ReviewDue:   bg.ReviewDue,
		State:       string(bg.State),
		Outcome:     string(bg.Outcome),
		ClosedAt:    bg.ClosedAt,
		EscalatedAt: bg.EscalatedAt,
	}
	for _, rv := range bg.Reviews {
		rec.Reviews = append(rec.Reviews, breakGlassReviewRecord{
			Reviewer: string(rv.Reviewer),
			Groups:   rv.Groups,
			Outcome:  string(rv.Outcome),
			Notes:    rv.Notes,
			At:       rv.At,
		})
	}
	return rec
}

func (rec breakGlassRecord) breakGlass() approval.BreakGlass {
	bg := approval.BreakGlass{
		ID:          rec.ID,
		Taker:       approval.Principal(rec.Taker),
		Beneficiary: approval.Principal(rec.Beneficiary),
		Entitlement: rec.Entitlement,
		Reason:      rec.Reason,
		Incident:    rec.Incident,
		GrantID:     rec.GrantID,
		Credential:  rec.Credential.ref(),
		TakenAt:     rec.TakenAt,
		ReviewDue:   rec.ReviewDue,
		State:       approval.BreakGlassState(rec.State),
		Outcome:     approval.ReviewOutcome(rec.Outcome),
		ClosedAt:    rec.ClosedAt,
		EscalatedAt: rec.EscalatedAt,
		Version:     rec.Version,
	}
	for _, rv := range rec.Reviews {
		bg.Reviews = append(bg.Reviews, approval.BreakGlassReview{
			Reviewer: approval.Principal(rv.Reviewer),
			Groups:   rv.Groups,
			Outcome:  approval.ReviewOutcome(rv.Outcome),
			Notes:    rv.Notes,
			At:       rv.At,
		})
	}
	return bg
}

func decodeBreakGlass(key, raw []byte) (approval.BreakGlass, error) {
	var rec breakGlassRecord
	if err := decodeRecord("break-glass "+string(key), raw, &rec, func() int { return rec.V }); err != nil {
		return approval.BreakGlass{}, err
	}
	if rec.ID != string(key) {
		return approval.BreakGlass{}, fmt.Errorf("decode break-glass %s: record holds break-glass %q: %w", key, rec.ID, ErrCorruptRecord)
	}
	return rec.breakGlass(), nil
}

// CreateBreakGlass implements approval.BreakGlassStore. It stores bg with
// Version 1 (whatever bg.Version says) and returns an error wrapping
// approval.ErrConflict if a use with bg.ID exists, or approval.ErrInvalid
// if bg.ID is empty.
func (s *Store) CreateBreakGlass(ctx context.Context, bg approval.BreakGlass) error {
	return breakGlasses.create(ctx, s.db, bg)
}

// GetBreakGlass implements approval.BreakGlassStore. It returns an error
// wrapping approval.ErrNotFound if there is no use with that id, or
// ErrCorruptRecord if its record is unreadable.
func (s *Store) GetBreakGlass(ctx context.Context, id string) (approval.BreakGlass, error) {
	return breakGlasses.get(ctx, s.db, id)
}

// UpdateBreakGlass implements approval.BreakGlassStore. As in
// UpdateRequest, the read, fn and the write run in one bbolt write
// transaction, which is the compare-and-swap; fn runs exactly once per
// call, on a freshly decoded copy.
//
// If fn returns an error, UpdateBreakGlass writes nothing and returns that
// error unchanged. Otherwise it stores the copy with Version one above the
// stored one (fn's change to Version is ignored) and returns the stored
// use. It returns an error wrapping approval.ErrNotFound if there is no
// such use, approval.ErrInvalid if fn changed the ID, or ErrCorruptRecord
// if the stored record is unreadable.
func (s *Store) UpdateBreakGlass(ctx context.Context, id string, fn func(*approval.BreakGlass) error) (approval.BreakGlass, error) {
	return breakGlasses.update(ctx, s.db, id, fn)
}

// ListBreakGlass implements approval.BreakGlassStore: the uses matching
// f.Open and f.Taker (f.Overdue is ignored), newest (by TakenAt, then ID)
// first, at most f.Limit of them if it is positive. It scans the bucket in
// one read transaction, fine for the few break-glass uses a broker sees. A
// corrupt record fails the whole list (ErrCorruptRecord).
func (s *Store) ListBreakGlass(ctx context.Context, f approval.BreakGlassFilter) ([]approval.BreakGlass, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list break-glass: %w", err)
	}
	var out []approval.BreakGlass
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = listBreakGlassIn(tx, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list break-glass: %w", err)
	}
	return out, nil
}

// listBreakGlassIn is ListBreakGlass inside tx.
func listBreakGlassIn(tx *bolt.Tx, f approval.BreakGlassFilter) ([]approval.BreakGlass, error) {
	var out []approval.BreakGlass
	if b := tx.Bucket(breakGlassBucket); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			bg, err := decodeBreakGlass(k, v)
			if err != nil {
				return err
			}
			if (!f.Open || bg.State == approval.BreakGlassOpen) && (f.Taker == "" || bg.Taker == f.Taker) {
				out = append(out, bg)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b approval.BreakGlass) int {
		if c := b.TakenAt.Compare(a.TakenAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}
