package boltstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

func intentAt(id string, at time.Time) approval.Intent {
	return approval.Intent{GrantID: id, Recipe: approval.Recipe{Kind: approval.KindVaultSecret, Path: "database/creds/ro"},
		Principal: "spiffe://example.org/a", Entitlement: "db", RequestID: "r_1", CreatedAt: at, NotAfter: at.Add(10 * time.Minute)}
}

// T1: intents survive a close and reopen (they are fsynced before Vault is
// asked), come back oldest first with every field, and go when cleared.
func TestIntents_Lifecycle(t *testing.T) {
	path := dbPath(t)
	ctx := context.Background()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []approval.Intent{intentAt("g_1", epoch), intentAt("g_2", epoch.Add(time.Second))}
	for _, in := range []approval.Intent{want[1], want[0]} {
		if err := s.BeginIntent(ctx, in); err != nil {
			t.Fatalf("BeginIntent(%s) err = %v", in.GrantID, err)
		}
	}
	if err := s.BeginIntent(ctx, approval.Intent{}); !errors.Is(err, approval.ErrInvalid) {
		t.Errorf("BeginIntent(no grant ID) err = %v, want ErrInvalid", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, boltstore.Options{})
	got, err := s.Intents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Intents() after reopen (-want +got):\n%s", diff)
	}
	for _, id := range []string{"g_1", "g_1", "g_unknown"} {
		if err := s.ClearIntent(ctx, id); err != nil {
			t.Errorf("ClearIntent(%s) err = %v", id, err)
		}
	}
	if got, _ := s.Intents(ctx); len(got) != 1 || got[0].GrantID != "g_2" {
		t.Errorf("Intents() after clearing g_1 = %+v, want only g_2", got)
	}
}

// An unreadable intent fails the listing: it may hide a live credential.
func TestIntents_CorruptRecordFails(t *testing.T) {
	path := dbPath(t)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("intents")).Put([]byte("g_x"), []byte("{")) }); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	s = mustOpen(t, path, boltstore.Options{})
	if _, err := s.Intents(context.Background()); !errors.Is(err, boltstore.ErrCorruptRecord) {
		t.Errorf("Intents() err = %v, want ErrCorruptRecord", err)
	}
}

// RecordedRefsSince reads the ledger backwards and stops before since.
func TestRecordedRefsSince(t *testing.T) {
	s := mustOpen(t, dbPath(t), boltstore.Options{})
	now := epoch
	l, err := audit.New(audit.Config{Store: s, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i, ref := range []string{"old", "", "mid", "new"} {
		now = epoch.Add(time.Duration(i) * time.Minute)
		if _, err := l.Append(context.Background(), audit.Event{Action: "grant", Actor: "a", GrantID: "g", CredentialKind: "jwt", CredentialRef: ref}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.RecordedRefsSince(context.Background(), epoch.Add(2*time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]bool{"mid": true, "new": true}, got); diff != "" {
		t.Errorf("RecordedRefsSince (-want +got):\n%s", diff)
	}
}
