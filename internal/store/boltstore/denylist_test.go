package boltstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

func TestStore_DeniedJTIs(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	deny := func(jti string, exp time.Duration) {
		t.Helper()
		if err := s.DenyJTI(t.Context(), jti, epoch.Add(exp)); err != nil {
			t.Fatalf("DenyJTI(%s) err = %v", jti, err)
		}
	}
	list := func(now time.Duration) []boltstore.DeniedJTI {
		t.Helper()
		got, err := s.DeniedJTIs(t.Context(), epoch.Add(now))
		if err != nil {
			t.Fatalf("DeniedJTIs() err = %v", err)
		}
		return got
	}
	deny("g_c", 10*time.Minute)
	deny("g_a", 5*time.Minute)
	deny("g_b", 20*time.Minute)
	deny("g_b", 15*time.Minute) // an earlier expiry does not shorten the entry
	deny("g_a", 12*time.Minute) // a later one extends it

	want := []boltstore.DeniedJTI{
		{JTI: "g_a", Expires: epoch.Add(12 * time.Minute)},
		{JTI: "g_b", Expires: epoch.Add(20 * time.Minute)},
		{JTI: "g_c", Expires: epoch.Add(10 * time.Minute)},
	}
	if diff := cmp.Diff(want, list(0)); diff != "" {
		t.Errorf("DeniedJTIs(now) mismatch (-want +got):\n%s", diff)
	}
	// At exactly its expiry an entry is gone, and the listing deletes it.
	if diff := cmp.Diff(want[1:2], list(12*time.Minute)); diff != "" {
		t.Errorf("DeniedJTIs(+12m) mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[1:2], list(0)); diff != "" {
		t.Errorf("DeniedJTIs(now) after cleanup mismatch, want expired entries deleted (-want +got):\n%s", diff)
	}
	if err := s.DenyJTI(t.Context(), "", epoch); !errors.Is(err, approval.ErrInvalid) {
		t.Errorf("DenyJTI(empty) err = %v, want ErrInvalid", err)
	}
}

func TestStore_DeniedJTIs_ReadOnly(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatalf("Open() err = %v", err)
	}
	if err := s.DenyJTI(t.Context(), "g_a", epoch); err != nil {
		t.Fatalf("DenyJTI() err = %v", err)
	}
	mustClose(t, s)
	r := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	got, err := r.DeniedJTIs(t.Context(), epoch.Add(time.Hour))
	if err != nil || len(got) != 0 {
		t.Errorf("DeniedJTIs() on a read-only store = %v, %v; want none, nil", got, err)
	}
}
