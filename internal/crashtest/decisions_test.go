package crashtest

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

const approvedEntitlement = `version: 1
trust_domain: crash.test
entitlements:
  - name: jwt-approved
    owner: crash
    purpose: crash harness
    max_ttl: 15m
    requesters: [spiffe://crash.test/load]
    issuer: {jwt: {audience: [crash]}}
    approval:
      mode: approvers
      stages:
        - {groups: [dba], min: 2}
      window: 1h
`

// T41: kill -9 during concurrent revocations and second approvals. After
// restart every revoked approval's credentials are revoked or durably
// queued, every approved request has each of its approvals on record
// before any grant under it, and revoking again re-queues what is left
// instead of refusing.
func TestCrash_RevokesAndApprovals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the broker")
	}
	t.Parallel()
	h := newHarness(t, approvedEntitlement, nil)
	n := cycles(t)
	const perCycle = 16
	for c := range n {
		d := h.start(t)
		wl, closeWL := h.workload(t, d)
		alice, closeA := h.person(t, d, "alice", "dba")
		bob, closeB := h.person(t, d, "bob", "dba")
		carol, closeC := h.person(t, d, "carol", "dba")
		ctx := t.Context()
		// Requests approved once by alice; half of them also by bob, with
		// credentials minted under them.
		var approved, pending []string
		for i := range perCycle {
			resp, err := wl.RequestAccess(ctx, &brokerv1.RequestAccessRequest{Entitlement: "jwt-approved", Duration: durationpb.New(30 * time.Minute), Reason: "crash harness"})
			if err != nil {
				t.Fatalf("cycle %d: RequestAccess: %v", c+1, err)
			}
			id := resp.GetRequest().GetId()
			if _, err := alice.ApproveRequest(ctx, &adminv1.ApproveRequestRequest{Id: id, Comment: "ok"}); err != nil {
				t.Fatalf("cycle %d: alice approves %s: %v", c+1, id, err)
			}
			if i%2 == 0 {
				if _, err := bob.ApproveRequest(ctx, &adminv1.ApproveRequestRequest{Id: id, Comment: "ok"}); err != nil {
					t.Fatalf("cycle %d: bob approves %s: %v", c+1, id, err)
				}
				approved = append(approved, id)
				// The newest approval is the one credentials are minted
				// under, so these two are this request's.
				for range 2 {
					if _, err := wl.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "jwt-approved"}); err != nil {
						t.Fatalf("cycle %d: IssueCredential: %v", c+1, err)
					}
				}
			} else {
				pending = append(pending, id)
			}
		}
		// Chaos: carol revokes the approved ones, bob gives the second
		// approval to the others, the workload keeps minting; kill -9.
		chaos, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			for _, id := range approved {
				_, _ = carol.RevokeRequest(chaos, &adminv1.RevokeRequestRequest{Id: id, Reason: "crash harness"})
			}
		})
		wg.Go(func() {
			for _, id := range pending {
				_, _ = bob.ApproveRequest(chaos, &adminv1.ApproveRequestRequest{Id: id, Comment: "ok"})
			}
		})
		wg.Go(func() {
			for chaos.Err() == nil {
				_, _ = wl.IssueCredential(chaos, &brokerv1.IssueCredentialRequest{Entitlement: "jwt-approved"})
			}
		})
		time.Sleep(time.Duration(rand.IntN(250)) * time.Millisecond)
		d.kill()
		stop()
		wg.Wait()
		closeWL()
		closeA()
		closeB()
		closeC()
	}

	// Restart: the revocation queue drains; then revoking every revoked
	// request again must succeed and re-queue what is left.
	d := h.start(t)
	carol, closeC := h.person(t, d, "carol", "dba")
	defer closeC()
	again := checkDecisions(t, h, carol)
	d.stop(t)
	inspect(t, h, &again)
	t.Logf("T41 crash harness: %d cycles of %d requests: %+v", n, perCycle, again)
}

// decisionStats counts what checkDecisions saw.
type decisionStats struct {
	Requests, Approved, Revoked, Grants, UnderRevoked, Denied, Queued, Expired int
	RevokeAgainOK, RevokeAgainRefused                                          int
}

// checkDecisions revokes every revoked request again through the running
// broker, then inspects the stopped broker's data file.
func checkDecisions(t *testing.T, h *harness, carol adminv1.AdminServiceClient) decisionStats {
	t.Helper()
	var st decisionStats
	// Revoke again while the broker runs (the file is locked meanwhile).
	resp, err := carol.ListRequests(t.Context(), &adminv1.ListRequestsRequest{PageSize: 1000})
	if err != nil {
		t.Fatalf("ListRequests: %v", err)
	}
	for _, r := range resp.GetRequests() {
		if r.GetState() != brokerv1.RequestState_REQUEST_STATE_REVOKED {
			continue
		}
		_, err := carol.RevokeRequest(t.Context(), &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "again"})
		switch status.Code(err) {
		case codes.OK:
			st.RevokeAgainOK++
		default:
			st.RevokeAgainRefused++
			if st.RevokeAgainRefused == 1 {
				t.Errorf("revoking the revoked request %s again: %v; want it to re-queue what is left (T41)", r.GetId(), err)
			}
		}
	}
	return st
}

// inspect checks the stopped broker's data file; see TestCrash_RevokesAndApprovals.
func inspect(t *testing.T, h *harness, st *decisionStats) {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(h.dataDir, "writ.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := audit.Verify(t.Context(), store); err != nil {
		t.Fatalf("ledger does not verify: %v", err)
	}
	entries := scan(t, store)
	ctx := t.Context()
	now := time.Now()
	denied := map[string]bool{}
	list, err := store.DeniedJTIs(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		denied[d.JTI] = true
	}
	queued := map[string]bool{}
	items, err := store.Revocations().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		queued[it.Ref.ID] = true
	}
	// Ledger facts by request: first approve seq, reviews by reviewer.
	approveSeq := map[string]uint64{}
	reviewed := map[string]map[string]bool{}
	for _, e := range entries {
		rid := e.Details["request_id"]
		switch {
		case e.Action == "approve":
			if _, ok := approveSeq[rid]; !ok {
				approveSeq[rid] = e.Seq
			}
		case e.Action == "review" && e.Outcome == string(approval.DecisionApprove):
			if reviewed[rid] == nil {
				reviewed[rid] = map[string]bool{}
			}
			reviewed[rid][e.Actor] = true
		case e.Action == "grant" && e.Outcome == "granted" && rid != "":
			st.Grants++
			if s, ok := approveSeq[rid]; !ok || s > e.Seq {
				t.Errorf("ledger record %d grants %s under request %s before any approve record", e.Seq, e.GrantID, rid)
			}
		}
	}
	reqs, err := store.ListRequests(ctx, approval.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		st.Requests++
		if !r.ApprovedAt.IsZero() {
			st.Approved++
			if _, ok := approveSeq[r.ID]; !ok {
				t.Errorf("request %s is %s (approved at %s) but the ledger has no approve record", r.ID, r.State, r.ApprovedAt)
			}
			for _, rv := range r.Reviews {
				if rv.Decision == approval.DecisionApprove && !reviewed[r.ID][string(rv.Reviewer)] {
					t.Errorf("request %s: %s's approval is stored but not in the ledger", r.ID, rv.Reviewer)
				}
			}
		}
		if r.State != approval.StateRevoked && r.State != approval.StateExpired {
			continue
		}
		st.Revoked++
		grants, err := store.Grants(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range grants {
			st.UnderRevoked++
			switch {
			case denied[g.Ref.ID]:
				st.Denied++
			case queued[g.Ref.ID]:
				st.Queued++
			case !g.Ref.Expires.After(now):
				st.Expired++
			default:
				t.Errorf("request %s is %s but its credential %s (%s) is neither revoked nor queued", r.ID, r.State, g.GrantID, g.Ref.ID)
			}
		}
	}
}
