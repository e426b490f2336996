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

func TestStore_ApprovalSuite(t *testing.T) {
	t.Parallel()
	storetest.RunApprovalSuite(t, func(t *testing.T) approval.Store {
		return mustOpen(t, dbPath(t), boltstore.Options{})
	})
}

func TestStore_ApprovalReopen(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	storetest.RunApprovalReopen(t, func(t *testing.T) approval.Store {
		s, err := boltstore.Open(path, boltstore.Options{})
		if err != nil {
			t.Fatalf("Open() err = %v", err)
		}
		return s
	})
}

// request returns a minimal pending request.
func request(id string) approval.Request {
	return approval.Request{
		ID:          id,
		Requester:   "oidc:https://idp.example.com#alice",
		Beneficiary: "spiffe://example.org/ns/prod/sa/api",
		Entitlement: "db-admin",
		State:       approval.StatePending,
		CreatedAt:   epoch,
	}
}

// TestStore_UpdateRequest_VersionCounts checks the bbolt-specific version
// rule: 1 on create, one more per write.
func TestStore_UpdateRequest_VersionCounts(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	r := request("r_1")
	r.Version = 7
	if err := s.CreateRequest(t.Context(), r); err != nil {
		t.Fatalf("CreateRequest() err = %v", err)
	}
	for want := uint64(1); want <= 4; want++ {
		got, err := s.GetRequest(t.Context(), "r_1")
		if err != nil || got.Version != want {
			t.Fatalf("GetRequest().Version = %d, %v; want %d", got.Version, err, want)
		}
		upd, err := s.UpdateRequest(t.Context(), "r_1", func(*approval.Request) error { return nil })
		if err != nil || upd.Version != want+1 {
			t.Fatalf("UpdateRequest().Version = %d, %v; want %d", upd.Version, err, want+1)
		}
	}
}

func TestStore_InvalidInput(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	if err := s.CreateRequest(t.Context(), request("r_1")); err != nil {
		t.Fatalf("CreateRequest() err = %v", err)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"create with an empty id", func() error { return s.CreateRequest(t.Context(), request("")) }, approval.ErrInvalid},
		{"update that changes the id", func() error {
			_, err := s.UpdateRequest(t.Context(), "r_1", func(r *approval.Request) error { r.ID = "r_2"; return nil })
			return err
		}, approval.ErrInvalid},
		{"grant id with a slash", func() error {
			return s.AddGrant(t.Context(), approval.GrantRecord{GrantID: "g/1", RequestID: "r_1", IssuedAt: epoch})
		}, approval.ErrInvalid},
		{"empty grant id", func() error {
			return s.AddGrant(t.Context(), approval.GrantRecord{RequestID: "r_1", IssuedAt: epoch})
		}, approval.ErrInvalid},
		{"get with an empty id", func() error { _, err := s.GetRequest(t.Context(), ""); return err }, approval.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := s.GetRequest(t.Context(), "r_2"); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("GetRequest(r_2) err = %v, want ErrNotFound: a refused id change must write nothing", err)
	}
}

// TestStore_Grants_RequestIDWithSlash checks that a request whose ID is
// another's ID plus "/…" does not leak its grants into the other's.
func TestStore_Grants_RequestIDWithSlash(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	for _, id := range []string{"r", "r/x"} {
		if err := s.CreateRequest(t.Context(), request(id)); err != nil {
			t.Fatalf("CreateRequest(%s) err = %v", id, err)
		}
		if err := s.AddGrant(t.Context(), approval.GrantRecord{GrantID: "g_" + id[len(id)-1:], RequestID: id, IssuedAt: epoch}); err != nil {
			t.Fatalf("AddGrant(%s) err = %v", id, err)
		}
	}
	got, err := s.Grants(t.Context(), "r")
	if err != nil || len(got) != 1 || got[0].RequestID != "r" {
		t.Errorf("Grants(r) = %+v, %v; want only r's grant", got, err)
	}
}

// TestStore_CorruptRecords checks that unreadable records fail closed with
// ErrCorruptRecord instead of reading as empty or being overwritten.
func TestStore_CorruptRecords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
	}{
		{"not json", "garbage"},
		{"newer record version", `{"v":2,"id":"r_1","state":"pending"}`},
		{"record under the wrong key", `{"v":1,"id":"r_other","state":"pending"}`},
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
				return tx.Bucket([]byte("requests")).Put([]byte("r_1"), []byte(tt.raw))
			})
			s = mustOpen(t, path, boltstore.Options{})
			if _, err := s.GetRequest(t.Context(), "r_1"); !errors.Is(err, boltstore.ErrCorruptRecord) {
				t.Errorf("GetRequest() err = %v, want ErrCorruptRecord", err)
			}
			if _, err := s.UpdateRequest(t.Context(), "r_1", func(*approval.Request) error { return nil }); !errors.Is(err, boltstore.ErrCorruptRecord) {
				t.Errorf("UpdateRequest() err = %v, want ErrCorruptRecord", err)
			}
			if _, err := s.ListRequests(t.Context(), approval.Filter{}); !errors.Is(err, boltstore.ErrCorruptRecord) {
				t.Errorf("ListRequests() err = %v, want ErrCorruptRecord", err)
			}
		})
	}
}

// TestStore_ReadOnlyWithoutApprovalBuckets opens a file written before the
// approval buckets existed: reads are empty, not errors.
func TestStore_ReadOnlyWithoutApprovalBuckets(t *testing.T) {
	t.Parallel()
	path := dbPath(t)
	rawUpdate(t, path, func(*bolt.Tx) error { return nil })
	s := mustOpen(t, path, boltstore.Options{ReadOnly: true})
	if _, err := s.GetRequest(t.Context(), "r_1"); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("GetRequest() err = %v, want ErrNotFound", err)
	}
	if got, err := s.ListRequests(t.Context(), approval.Filter{}); err != nil || len(got) != 0 {
		t.Errorf("ListRequests() = %v, %v; want none", got, err)
	}
	if got, err := s.GrantsFor(t.Context(), "spiffe://example.org/a", time.Time{}, 0); err != nil || len(got) != 0 {
		t.Errorf("GrantsFor() = %v, %v; want none", got, err)
	}
	if got, err := s.DeniedJTIs(t.Context(), epoch); err != nil || len(got) != 0 {
		t.Errorf("DeniedJTIs() = %v, %v; want none", got, err)
	}
	if n, err := s.Revocations().Pending(t.Context()); err != nil || n != 0 {
		t.Errorf("Pending() = %d, %v; want 0", n, err)
	}
}
