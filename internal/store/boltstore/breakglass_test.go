package boltstore_test

import (
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/store/storetest"
)

func TestStore_BreakGlassSuite(t *testing.T) {
	t.Parallel()
	storetest.RunBreakGlassSuite(t, func(t *testing.T) approval.BreakGlassStore {
		return mustOpen(t, dbPath(t), boltstore.Options{})
	})
}

// breakGlass returns a minimal open break-glass use.
func breakGlass(id string) approval.BreakGlass {
	return approval.BreakGlass{
		ID: id, Taker: "oidc:https://idp.example.com#sam", Beneficiary: "oidc:https://idp.example.com#sam",
		Entitlement: "db-admin", Reason: "incident", TakenAt: epoch, ReviewDue: epoch.Add(24 * time.Hour), State: approval.BreakGlassOpen,
	}
}

// TestStore_UpdateBreakGlass_VersionCounts checks the bbolt-specific
// version rule, and that the use survives reopening the file.
func TestStore_UpdateBreakGlass_VersionCounts(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatalf("Open() err = %v", err)
	}
	bg := breakGlass("bg_1")
	bg.Version = 7
	if err := s.CreateBreakGlass(t.Context(), bg); err != nil {
		t.Fatalf("CreateBreakGlass() err = %v", err)
	}
	for want := uint64(1); want <= 3; want++ {
		got, err := s.GetBreakGlass(t.Context(), "bg_1")
		if err != nil || got.Version != want {
			t.Fatalf("GetBreakGlass().Version = %d, %v; want %d", got.Version, err, want)
		}
		upd, err := s.UpdateBreakGlass(t.Context(), "bg_1", func(bg *approval.BreakGlass) error { bg.EscalatedAt = epoch; return nil })
		if err != nil || upd.Version != want+1 {
			t.Fatalf("UpdateBreakGlass().Version = %d, %v; want %d", upd.Version, err, want+1)
		}
	}
	mustClose(t, s)
	s = mustOpen(t, path, boltstore.Options{ReadOnly: true})
	if got, err := s.GetBreakGlass(t.Context(), "bg_1"); err != nil || got.Version != 4 || !got.EscalatedAt.Equal(epoch) {
		t.Errorf("GetBreakGlass() after reopen = %+v, %v; want version 4, escalated", got, err)
	}
}

func TestStore_BreakGlass_InvalidInput(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	if err := s.CreateBreakGlass(t.Context(), breakGlass("bg_1")); err != nil {
		t.Fatalf("CreateBreakGlass() err = %v", err)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"create with an empty id", func() error { return s.CreateBreakGlass(t.Context(), breakGlass("")) }, approval.ErrInvalid},
		{"update that changes the id", func() error {
			_, err := s.UpdateBreakGlass(t.Context(), "bg_1", func(bg *approval.BreakGlass) error { bg.ID = "bg_2"; return nil })
			return err
		}, approval.ErrInvalid},
		{"get with an empty id", func() error { _, err := s.GetBreakGlass(t.Context(), ""); return err }, approval.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := s.GetBreakGlass(t.Context(), "bg_2"); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("GetBreakGlass(bg_2) err = %v, want ErrNotFound: a refused id change must write nothing", err)
	}
}

// TestStore_BreakGlass_CorruptRecords checks that unreadable break-glass
// records fail closed with ErrCorruptRecord.
func TestStore_BreakGlass_CorruptRecords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
	}{
		{"not json", "garbage"},
		{"newer record version", `{"v":2,"id":"bg_1","state":"open"}`},
		{"record under the wrong key", `{"v":1,"id":"bg_other","state":"open"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := dbPath(t)
			s, err := boltstore.Open(path, boltstore.Options{})
			if err != nil {
				t.Fatalf("Open() err = %v", err)
			}
			mustClose(t, s)
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("breakglass")).Put([]byte("bg_1"), []byte(tt.raw))
			})
			s = mustOpen(t, path, boltstore.Options{})
			if _, err := s.GetBreakGlass(t.Context(), "bg_1"); !errors.Is(err, boltstore.ErrCorruptRecord) {
				t.Errorf("GetBreakGlass() err = %v, want ErrCorruptRecord", err)
			}
			if _, err := s.UpdateBreakGlass(t.Context(), "bg_1", func(*approval.BreakGlass) error { return nil }); !errors.Is(err, boltstore.ErrCorruptRecord) {
				t.Errorf("UpdateBreakGlass() err = %v, want ErrCorruptRecord", err)
			}
			if _, err := s.ListBreakGlass(t.Context(), approval.BreakGlassFilter{}); !errors.Is(err, boltstore.ErrCorruptRecord) {
				t.Errorf("ListBreakGlass() err = %v, want ErrCorruptRecord", err)
			}
		})
	}
}

// TestStore_ReadOnlyWithoutBreakGlassBucket opens a file written before the
// breakglass bucket existed: reads are empty, not errors.
func TestStore_ReadOnlyWithoutBreakGlassBucket(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	rawUpdate(t, path, func(*bolt.Tx) error { return nil })
	s := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	if _, err := s.GetBreakGlass(t.Context(), "bg_1"); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("GetBreakGlass() err = %v, want ErrNotFound", err)
	}
	if got, err := s.ListBreakGlass(t.Context(), approval.BreakGlassFilter{}); err != nil || len(got) != 0 {
		t.Errorf("ListBreakGlass() = %v, %v; want none", got, err)
	}
}
