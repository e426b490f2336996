package boltstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

func TestStore_GrantEntry(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "writ.db")
	s := mustOpen(t, path, boltstore.Options{})
	l, err := audit.New(audit.Config{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ev := range []audit.Event{
		{Action: "grant", GrantID: "g1", CredentialRef: "lease/1", Outcome: "granted"},
		{Action: "deny", Outcome: "not_eligible"}, // no credential: not indexed
		{Action: "grant", GrantID: "g2", CredentialRef: "acc-2", Outcome: "granted"},
		{Action: "renew", GrantID: "g1", CredentialRef: "lease/1", Outcome: "renewed"},
		{Action: "grant_failed", GrantID: "g3", Outcome: "error"}, // nothing issued: not indexed
	} {
		if _, err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		grant      string
		wantOK     bool
		wantAction string
		wantSeq    uint64
	}{
		{"g1", true, "renew", 4},
		{"g2", true, "grant", 3},
		{"g3", false, "", 0},
		{"nope", false, "", 0},
	}
	for _, tt := range tests {
		e, ok, err := s.GrantEntry(ctx, tt.grant)
		if err != nil || ok != tt.wantOK || e.Action != tt.wantAction || e.Seq != tt.wantSeq {
			t.Errorf("GrantEntry(%q) = seq %d %q, %v, %v; want seq %d %q, %v", tt.grant, e.Seq, e.Action, ok, err, tt.wantSeq, tt.wantAction, tt.wantOK)
		}
	}
}
