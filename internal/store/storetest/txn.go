package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/txn"
)

// TxBackend is what RunTxSuite needs of a backend: its unit of work and
// the ways to read, outside any transaction, what one committed.
type TxBackend struct {
	Committer  txn.Committer
	Store      approval.Store
	BreakGlass approval.BreakGlassStore
	Ledger     audit.Scanner
	Queue      revoke.Queue
	// Denied returns the JWT IDs on the deny-list that have not expired at now.
	Denied func(ctx context.Context, now time.Time) ([]string, error)
}

// errAbort is what the suite's units of work fail with.
var errAbort = errors.New("storetest: abort")

// RunTxSuite checks the txn.Committer contract: everything a unit of work
// writes (requests, grant records, break-glass uses, ledger entries,
// revocation queue entries, deny-list entries, the policy version) commits
// together, or nothing does. open returns a backend over an empty store,
// closed by t.Cleanup.
func RunTxSuite(t *testing.T, open func(t *testing.T) TxBackend) {
	ctx := context.Background()
	const jti = "jti-1"
	// writeAll writes one of everything through tx.
	writeAll := func(t *testing.T, tx txn.Tx) {
		t.Helper()
		r := fullRequest("r1", 0)
		r.State, r.Reviews, r.ApprovedAt, r.WindowEnd, r.ResolvedAt, r.ResolvedBy, r.ResolutionNote = approval.StatePending, nil, time.Time{}, time.Time{}, time.Time{}, "", ""
		mustNil(t, "CreateRequest", tx.CreateRequest(ctx, r))
		_, err := tx.UpdateRequest(ctx, "r1", func(r *approval.Request) error { r.Reason = "changed"; return nil })
		mustNil(t, "UpdateRequest", err)
		mustNil(t, "AddGrant", tx.AddGrant(ctx, approval.GrantRecord{GrantID: "g1", RequestID: "r1", Ref: approval.CredentialRef{Kind: approval.KindJWT, ID: jti, Expires: epoch.Add(time.Hour)}, IssuedAt: epoch}))
		mustNil(t, "CreateBreakGlass", tx.CreateBreakGlass(ctx, approval.BreakGlass{ID: "bg1", Taker: requester, Beneficiary: benefA, Entitlement: "db-admin", Reason: "x", TakenAt: epoch, ReviewDue: epoch.Add(time.Hour), State: approval.BreakGlassOpen}))
		for _, action := range []string{"first", "second"} {
			e, err := tx.AppendEntry(linkEvent(audit.Event{Action: action}))
			mustNil(t, "AppendEntry", err)
			if want := map[string]uint64{"first": 1, "second": 2}[action]; e.Seq != want {
				t.Errorf("AppendEntry(%s) seq = %d, want %d: the transaction must see its own appends", action, e.Seq, want)
			}
		}
		mustNil(t, "Enqueue", tx.Enqueue(revoke.Item{ID: "jwt:" + jti, Ref: approval.CredentialRef{Kind: approval.KindJWT, ID: jti}, RequestID: "r1", GrantID: "g1", NextAt: epoch, EnqueuedAt: epoch}))
		mustNil(t, "DenyJTI", tx.DenyJTI(jti, epoch.Add(time.Hour)))
		mustNil(t, "SetPolicyVersion", tx.SetPolicyVersion("v1"))
		// Reads in the transaction see its writes.
		if got, err := tx.GetRequest(ctx, "r1"); err != nil || got.Reason != "changed" {
			t.Errorf("GetRequest in the transaction = %q, %v; want its own update", got.Reason, err)
		}
		if gs, err := tx.Grants(ctx, "r1"); err != nil || len(gs) != 1 {
			t.Errorf("Grants in the transaction = %v, %v; want its own grant", gs, err)
		}
		if v, err := tx.PolicyVersion(); err != nil || v != "v1" {
			t.Errorf("PolicyVersion in the transaction = %q, %v; want v1", v, err)
		}
	}
	// state reads what is committed.
	type state struct {
		Requests, BreakGlass, Ledger, Queued int
		Denied                               []string
		Policy                               string
	}
	read := func(t *testing.T, b TxBackend) state {
		t.Helper()
		var s state
		rs, err := b.Store.ListRequests(ctx, approval.Filter{})
		mustNil(t, "ListRequests", err)
		bgs, err := b.BreakGlass.ListBreakGlass(ctx, approval.BreakGlassFilter{})
		mustNil(t, "ListBreakGlass", err)
		mustNil(t, "ScanRecords", b.Ledger.ScanRecords(ctx, func(uint64, []byte) error { s.Ledger++; return nil }))
		s.Requests, s.BreakGlass = len(rs), len(bgs)
		s.Queued, err = b.Queue.Pending(ctx)
		mustNil(t, "Pending", err)
		s.Denied, err = b.Denied(ctx, epoch)
		mustNil(t, "Denied", err)
		mustNil(t, "Commit", b.Committer.Commit(ctx, func(tx txn.Tx) error {
			s.Policy, err = tx.PolicyVersion()
			return err
		}))
		return s
	}

	t.Run("a committed unit of work stores everything", func(t *testing.T) {
		t.Parallel()
		b := open(t)
		if err := b.Committer.Commit(ctx, func(tx txn.Tx) error { writeAll(t, tx); return nil }); err != nil {
			t.Fatalf("Commit() err = %v", err)
		}
		want := state{Requests: 1, BreakGlass: 1, Ledger: 2, Queued: 1, Denied: []string{jti}, Policy: "v1"}
		if diff := cmp.Diff(want, read(t, b)); diff != "" {
			t.Errorf("after Commit (-want +got):\n%s", diff)
		}
	})
	t.Run("a failed unit of work stores nothing", func(t *testing.T) {
		t.Parallel()
		b := open(t)
		err := b.Committer.Commit(ctx, func(tx txn.Tx) error { writeAll(t, tx); return errAbort })
		if !errors.Is(err, errAbort) {
			t.Fatalf("Commit() err = %v, want fn's error", err)
		}
		if diff := cmp.Diff(state{}, read(t, b)); diff != "" {
			t.Errorf("after a failed Commit (-want +got):\n%s", diff)
		}
	})
	t.Run("a refused update writes nothing of its own and the rest commits", func(t *testing.T) {
		t.Parallel()
		b := open(t)
		r := fullRequest("r1", 0)
		mustNil(t, "CreateRequest", b.Store.CreateRequest(ctx, r))
		errRefused := errors.New("refused")
		err := b.Committer.Commit(ctx, func(tx txn.Tx) error {
			if _, err := tx.UpdateRequest(ctx, "r1", func(r *approval.Request) error { r.Reason = "changed"; return errRefused }); err != errRefused {
				t.Errorf("UpdateRequest() err = %v, want fn's error unchanged", err)
			}
			if _, err := tx.UpdateRequest(ctx, "nope", func(*approval.Request) error { return nil }); !errors.Is(err, approval.ErrNotFound) {
				t.Errorf("UpdateRequest(unknown) err = %v, want ErrNotFound", err)
			}
			if _, err := tx.GetBreakGlass(ctx, "nope"); !errors.Is(err, approval.ErrNotFound) {
				t.Errorf("GetBreakGlass(unknown) err = %v, want ErrNotFound", err)
			}
			if err := tx.CreateRequest(ctx, r); !errors.Is(err, approval.ErrConflict) {
				t.Errorf("CreateRequest(existing) err = %v, want ErrConflict", err)
			}
			_, err := tx.AppendEntry(linkEvent(audit.Event{Action: "review_refused"}))
			return err
		})
		if err != nil {
			t.Fatalf("Commit() err = %v", err)
		}
		got, err := b.Store.GetRequest(ctx, "r1")
		if err != nil || got.Reason != r.Reason || got.Version != 1 {
			t.Errorf("request after a refused update = %q v%d, %v; want unchanged", got.Reason, got.Version, err)
		}
		if s := read(t, b); s.Ledger != 1 {
			t.Errorf("ledger has %d entries, want the refusal's 1", s.Ledger)
		}
	})
	t.Run("an entry that does not link to the head is refused", func(t *testing.T) {
		t.Parallel()
		b := open(t)
		err := b.Committer.Commit(ctx, func(tx txn.Tx) error {
			_, err := tx.AppendEntry(func(audit.Entry, bool) (audit.Entry, error) {
				e := audit.Entry{Seq: 7, Time: epoch, Event: audit.Event{Action: "x"}, PrevHash: audit.ZeroHash}
				e.Hash = e.ComputeHash()
				return e, nil
			})
			return err
		})
		if !errors.Is(err, audit.ErrNotNext) {
			t.Errorf("Commit() err = %v, want audit.ErrNotNext", err)
		}
		if s := read(t, b); s.Ledger != 0 {
			t.Errorf("ledger has %d entries, want none", s.Ledger)
		}
	})
}

// linkEvent returns the Build of an entry for ev at epoch.
func linkEvent(ev audit.Event) audit.Build {
	return func(head audit.Entry, ok bool) (audit.Entry, error) {
		e := audit.Entry{Seq: 1, Time: epoch, Event: ev, PrevHash: audit.ZeroHash}
		if ok {
			e.Seq, e.PrevHash = head.Seq+1, head.Hash
		}
		e.Hash = e.ComputeHash()
		return e, nil
	}
}

func mustNil(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s err = %v", what, err)
	}
}
