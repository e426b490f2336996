package broker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/testenv"
	"github.com/writ-dev/writ/internal/vault"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func requestAccess(t *testing.T, c brokerv1.BrokerServiceClient, entitlement string, d time.Duration) *brokerv1.AccessRequest {
	t.Helper()
	resp, err := c.RequestAccess(context.Background(), &brokerv1.RequestAccessRequest{Entitlement: entitlement, Duration: durationpb.New(d), Reason: "incident 42"})
	if err != nil {
		t.Fatalf("RequestAccess(%s): %v", entitlement, err)
	}
	if resp.GetRequest().GetState() != brokerv1.RequestState_REQUEST_STATE_PENDING {
		t.Fatalf("new request state = %v, want pending", resp.GetRequest().GetState())
	}
	return resp.GetRequest()
}

func approve(e *apprEnv, who, id string) (*brokerv1.AccessRequest, error) {
	resp, err := e.person(who).ApproveRequest(context.Background(), &adminv1.ApproveRequestRequest{Id: id, Comment: "ok"})
	return resp.GetRequest(), err
}

func issue(c brokerv1.BrokerServiceClient, entitlement string, ttl time.Duration) (*brokerv1.Credential, error) {
	req := &brokerv1.IssueCredentialRequest{Entitlement: entitlement}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := c.IssueCredential(context.Background(), req)
	return resp.GetCredential(), err
}

// Acceptance: a 2-of-N stage; no credential before approval; after approval
// credentials last at most the window left; after the window none.
func TestApproval_TwoOfN(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "db-admin", 30*time.Minute)

	if _, err := issue(w, "db-admin", 0); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), r.GetId()) {
		t.Errorf("credential before approval = %v, want FailedPrecondition naming the pending request", err)
	}
	got, err := approve(e, "alice", r.GetId())
	if err != nil || got.GetState() != brokerv1.RequestState_REQUEST_STATE_PENDING {
		t.Fatalf("first approval: state %v, err %v; want still pending", got.GetState(), err)
	}
	got, err = approve(e, "bob", r.GetId())
	if err != nil || got.GetState() != brokerv1.RequestState_REQUEST_STATE_APPROVED {
		t.Fatalf("second approval: state %v, err %v; want approved", got.GetState(), err)
	}
	// T17: a third review of a resolved request is refused.
	if _, err := approve(e, "carol", r.GetId()); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("third approval = %v, want FailedPrecondition (already resolved)", err)
	}

	c, err := issue(w, "db-admin", 0)
	if err != nil {
		t.Fatalf("credential after approval: %v", err)
	}
	if ttl := c.GetExpiresAt().AsTime().Sub(e.clock.Now()); ttl != 10*time.Minute {
		t.Errorf("credential ttl = %v, want max_ttl 10m", ttl)
	}
	e.clock.Advance(25 * time.Minute) // 5 minutes of the window left
	c, err = issue(w, "db-admin", 0)
	if err != nil {
		t.Fatalf("credential late in the window: %v", err)
	}
	if end := c.GetExpiresAt().AsTime(); !end.Equal(got.GetWindowEnd().AsTime()) {
		t.Errorf("credential expires %v, want the window end %v", end, got.GetWindowEnd().AsTime())
	}
	if _, err := issue(w, "db-admin", 6*time.Minute); status.Code(err) != codes.InvalidArgument {
		t.Errorf("6m credential with 5m of window left = %v, want InvalidArgument, never capped", err)
	}
	e.clock.Advance(5 * time.Minute)
	if _, err := issue(w, "db-admin", 0); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("credential after the window = %v, want FailedPrecondition", err)
	}
	acts := e.actions()
	for _, want := range []string{"request:pending", "review:approve", "approve:approved", "review_refused:", "grant:granted", "deny:window_ended"} {
		if countPrefix(acts, want) == 0 {
			t.Errorf("ledger lacks %q: %v", want, acts)
		}
	}
	if n := countPrefix(e.notifier.kinds(), "request."); n < 2 {
		t.Errorf("notifications = %v, want pending and approved", e.notifier.kinds())
	}
}

func TestApproval_TwoStagesBothRequired(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	r := requestAccess(t, e.workload(orderAPI), "two-stage", time.Hour)
	if got, err := approve(e, "alice", r.GetId()); err != nil || got.GetState() != brokerv1.RequestState_REQUEST_STATE_PENDING {
		t.Fatalf("dba approval: %v %v, want pending", got.GetState(), err)
	}
	// The dba stage is satisfied; another dba cannot stand in for security.
	if _, err := approve(e, "bob", r.GetId()); status.Code(err) != codes.PermissionDenied {
		t.Errorf("second dba approval = %v, want PermissionDenied", err)
	}
	if got, err := approve(e, "dave", r.GetId()); err != nil || got.GetState() != brokerv1.RequestState_REQUEST_STATE_APPROVED {
		t.Fatalf("security approval: %v %v, want approved", got.GetState(), err)
	}
}

// T19, T20 and group membership: each refusal is PermissionDenied and in the ledger.
func TestApproval_SeparationOfDuties(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	resp, err := e.person("mallory").CreateRequest(context.Background(), &adminv1.CreateRequestRequest{
		Beneficiary: orderAPI.String(), Entitlement: "db-admin", Duration: durationpb.New(time.Hour), Reason: "on behalf"})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetRequest().GetId()
	if _, err := approve(e, "mallory", id); status.Code(err) != codes.PermissionDenied {
		t.Errorf("requester approving own request = %v, want PermissionDenied", err)
	}
	if _, err := approve(e, "alice", id); err != nil {
		t.Fatal(err)
	}
	if _, err := approve(e, "alice", id); status.Code(err) != codes.PermissionDenied {
		t.Errorf("same approver twice = %v, want PermissionDenied", err)
	}
	if _, err := approve(e, "eve", id); status.Code(err) != codes.PermissionDenied {
		t.Errorf("approver outside the group = %v, want PermissionDenied", err)
	}
	if _, err := e.person("mallory").DenyRequest(context.Background(), &adminv1.DenyRequestRequest{Id: id}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("requester denying own request = %v, want PermissionDenied", err)
	}
	if n := countPrefix(e.actions(), "review_refused:"); n != 4 {
		t.Errorf("ledger has %d review_refused records, want 4: %v", n, e.actions())
	}
	// A workload cannot review: the admin listener wants a person.
	if _, err := e.person("").ApproveRequest(context.Background(), &adminv1.ApproveRequestRequest{Id: id}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("approval without a token = %v, want Unauthenticated", err)
	}
	if _, err := e.person("forged").ApproveRequest(context.Background(), &adminv1.ApproveRequestRequest{Id: id}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("approval with a bad token = %v, want Unauthenticated", err)
	}
}

// T18: approve and deny race on a 1-of-N request, 200 times: exactly one
// wins, and the resolved state never changes afterwards.
func TestApproval_ApproveDenyRace(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	w := e.workload(orderAPI)
	alice, bob := e.person("alice"), e.person("bob")
	wins := map[string]int{}
	for i := range 200 {
		r := requestAccess(t, w, "one-dba", time.Hour)
		var wg sync.WaitGroup
		var aerr, derr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, aerr = alice.ApproveRequest(context.Background(), &adminv1.ApproveRequestRequest{Id: r.GetId()})
		}()
		go func() {
			defer wg.Done()
			_, derr = bob.DenyRequest(context.Background(), &adminv1.DenyRequestRequest{Id: r.GetId()})
		}()
		wg.Wait()
		if (aerr == nil) == (derr == nil) {
			t.Fatalf("run %d: approve err %v, deny err %v; want exactly one winner", i, aerr, derr)
		}
		loser := aerr
		if loser == nil {
			loser = derr
		}
		if status.Code(loser) != codes.FailedPrecondition {
			t.Fatalf("run %d: loser got %v, want FailedPrecondition (already resolved)", i, loser)
		}
		got, err := alice.GetRequest(context.Background(), &adminv1.GetRequestRequest{Id: r.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		state := got.GetRequest().GetState()
		if (aerr == nil && state != brokerv1.RequestState_REQUEST_STATE_APPROVED) || (derr == nil && state != brokerv1.RequestState_REQUEST_STATE_DENIED) {
			t.Fatalf("run %d: stored state %v does not match the winner", i, state)
		}
		wins[state.String()]++
	}
	t.Logf("winners: %v", wins)
}

func TestApproval_WatchRequest(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "one-dba", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := w.WatchRequest(ctx, &brokerv1.WatchRequestRequest{RequestId: r.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetRequest().GetState() != brokerv1.RequestState_REQUEST_STATE_PENDING {
		t.Fatalf("first watch message: %v %v", first, err)
	}
	if _, err := approve(e, "alice", r.GetId()); err != nil {
		t.Fatal(err)
	}
	next, err := stream.Recv()
	if err != nil || next.GetRequest().GetState() != brokerv1.RequestState_REQUEST_STATE_APPROVED {
		t.Fatalf("watch after approval: %v %v", next, err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Error("watch did not end after the request was resolved")
	}
	// Another workload cannot watch it.
	other := e.workload(spiffeIDOther(t))
	s2, err := other.WatchRequest(ctx, &brokerv1.WatchRequestRequest{RequestId: r.GetId()})
	if err == nil {
		_, err = s2.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Errorf("another workload watching = %v, want NotFound", err)
	}
}

// Causal revocation of JWTs: every jti minted under the approval goes on the
// deny-list and the receipt lists all 50.
func TestApproval_RevokeFiftyJWTs(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "one-dba", time.Hour)
	if _, err := approve(e, "alice", r.GetId()); err != nil {
		t.Fatal(err)
	}
	var jtis []string
	for range 50 {
		c, err := issue(w, "one-dba", 0)
		if err != nil {
			t.Fatal(err)
		}
		jtis = append(jtis, c.GetReference())
	}
	resp, err := e.person("bob").RevokeRequest(context.Background(), &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "incident over"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != 50 {
		t.Fatalf("receipt lists %d credentials, want 50", len(resp.GetResults()))
	}
	denied := e.denied()
	for i, res := range resp.GetResults() {
		if res.GetOutcome() != "revoked" {
			t.Errorf("result %d = %v, want revoked", i, res)
		}
	}
	for _, j := range jtis {
		if !denied[j] {
			t.Errorf("jti %s is not on the deny-list", j)
		}
	}
	if _, err := issue(w, "one-dba", 0); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("credential after revocation = %v, want FailedPrecondition", err)
	}
	if n := countPrefix(e.actions(), "credential_revoked:revoked"); n != 50 {
		t.Errorf("ledger has %d credential_revoked records, want 50", n)
	}
	// Eve is neither requester nor approver: to her the request does not exist.
	if _, err := e.person("eve").RevokeRequest(context.Background(), &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "x"}); status.Code(err) != codes.NotFound {
		t.Errorf("revoke by an outsider = %v, want NotFound", err)
	}
}

// Acceptance: 50 live Vault tokens under one approval are all invalid at
// Vault after `writ revoke`, and the receipt lists all 50.
func TestApproval_RevokeFiftyVaultTokens(t *testing.T) {
	t.Parallel()
	iss, _ := vaultIssuer(t)
	e := newApprEnv(t, apprOptions{issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: iss}})
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "vault-admin", time.Hour)
	if _, err := approve(e, "alice", r.GetId()); err != nil {
		t.Fatal(err)
	}
	var accessors []string
	for range 50 {
		c, err := issue(w, "vault-admin", 0)
		if err != nil {
			t.Fatal(err)
		}
		accessors = append(accessors, c.GetReference())
	}
	resp, err := e.person("alice").RevokeRequest(context.Background(), &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "done"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != 50 {
		t.Fatalf("receipt lists %d, want 50", len(resp.GetResults()))
	}
	for _, a := range accessors {
		if _, _, err := iss.LookupAccessor(context.Background(), a); err == nil {
			t.Errorf("token %s still valid at Vault", a)
		}
	}
}

// Acceptance (T12, T13): Vault unreachable during revoke → revocations are
// queued; the broker restarts; Vault reachable again → all revoked.
func TestApproval_RevokeQueuedAcrossRestart(t *testing.T) {
	t.Parallel()
	_, v := vaultIssuer(t)
	proxy := testenv.StartProxy(t, strings.TrimPrefix(v.Addr, "http://"))
	token := v.Token(t, "writ-broker")
	viaProxy := func() *vault.TokenIssuer {
		iss, err := vault.New(vault.Config{Address: "http://" + proxy.Addr(), Token: token, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	direct, err := vault.New(vault.Config{Address: v.Addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	e := newApprEnv(t, apprOptions{issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: viaProxy()}})
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "vault-admin", time.Hour)
	if _, err := approve(e, "alice", r.GetId()); err != nil {
		t.Fatal(err)
	}
	var accessors []string
	for range 5 {
		c, err := issue(w, "vault-admin", 0)
		if err != nil {
			t.Fatal(err)
		}
		accessors = append(accessors, c.GetReference())
	}
	proxy.Down()
	resp, err := e.person("alice").RevokeRequest(context.Background(), &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "leak"})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range resp.GetResults() {
		if res.GetOutcome() != "queued" {
			t.Errorf("result with Vault down = %v, want queued", res)
		}
	}
	// Restart: a new broker on the same data file.
	e.stop()
	e2 := newApprEnv(t, apprOptions{path: e.path, ca: e.ca, clock: e.clock,
		issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: viaProxy()}})
	proxy.Up()
	e2.clock.Advance(time.Second)
	done, failed, err := e2.revoker.RunOnce(context.Background())
	if err != nil || done != 5 || failed != 0 {
		t.Fatalf("RunOnce after restart = %d done, %d failed, %v; want 5 done", done, failed, err)
	}
	for _, a := range accessors {
		if _, _, err := direct.LookupAccessor(context.Background(), a); err == nil {
			t.Errorf("token %s still valid at Vault after the queued revocation", a)
		}
	}
}

func TestAdmin_ExplainAndShow(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	alice := e.person("alice")
	ex, err := alice.ExplainPolicy(context.Background(), &adminv1.ExplainPolicyRequest{SpiffeId: orderAPI.String(), Entitlement: "db-admin"})
	if err != nil {
		t.Fatal(err)
	}
	if !ex.GetEligible() || ex.GetApprovalMode() != "approvers" || len(ex.GetStages()) != 1 || !strings.Contains(ex.GetSummary(), "2 of [dba]") {
		t.Errorf("ExplainPolicy = %v", ex)
	}
	ex, err = alice.ExplainPolicy(context.Background(), &adminv1.ExplainPolicyRequest{SpiffeId: stranger.String(), Entitlement: "db-admin"})
	if err != nil || ex.GetEligible() {
		t.Errorf("ExplainPolicy(stranger) = %v, %v; want not eligible", ex, err)
	}
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "db-admin", 5*time.Minute)
	if _, err := approve(e, "alice", r.GetId()); err != nil {
		t.Fatal(err)
	}
	show, err := e.person("bob").GetRequest(context.Background(), &adminv1.GetRequestRequest{Id: r.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got := show.GetEffectiveTtl().AsDuration(); got != 5*time.Minute {
		t.Errorf("effective ttl = %v, want 5m (the window, below max_ttl)", got)
	}
	if st := show.GetStages(); len(st) != 1 || st[0].GetHave() != 1 || st[0].GetMin() != 2 {
		t.Errorf("stages = %v, want 1 of 2", st)
	}
	list, err := e.person("bob").ListRequests(context.Background(), &adminv1.ListRequestsRequest{Pending: true})
	if err != nil || len(list.GetRequests()) != 1 {
		t.Errorf("pending list = %v, %v", list, err)
	}
	mine, err := e.person("bob").ListRequests(context.Background(), &adminv1.ListRequestsRequest{Mine: true})
	if err != nil || len(mine.GetRequests()) != 0 {
		t.Errorf("bob's own requests = %v, %v; want none", mine, err)
	}
	// Reasons are bounded (T37): a 10 KiB reason is refused.
	_, err = w.RequestAccess(context.Background(), &brokerv1.RequestAccessRequest{Entitlement: "db-admin", Duration: durationpb.New(time.Hour), Reason: strings.Repeat("x", 10<<10)})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("10 KiB reason = %v, want InvalidArgument", err)
	}
	_, err = w.RequestAccess(context.Background(), &brokerv1.RequestAccessRequest{Entitlement: "db-admin", Duration: durationpb.New(2 * time.Hour), Reason: "x"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "1h") {
		t.Errorf("duration above the window = %v, want InvalidArgument naming 1h", err)
	}
}

func spiffeIDOther(t *testing.T) spiffeid.ID {
	t.Helper()
	return spiffeid.RequireFromPath(td, fmt.Sprintf("/ns/orders/other-%d", time.Now().UnixNano()%1000))
}
