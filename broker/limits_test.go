package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/testenv"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Grant RPCs are rate limited per principal, before the handler: a refused
// call is RESOURCE_EXHAUSTED naming the limit and writes nothing.
func TestLimits_GrantRatePerPrincipal(t *testing.T) {
	t.Parallel()
	clk := &clock{t: fixedNow}
	e := newEnv(t, envOptions{limits: broker.Limits{GrantRate: 1, GrantBurst: 2}, limitNow: clk.Now})
	api, rep := e.client(t, orderAPI), e.client(t, reporter)
	ctx := context.Background()
	for i := range 2 {
		if _, err := api.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"}); err != nil {
			t.Fatalf("grant %d within the burst: %v", i+1, err)
		}
	}
	_, err := api.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.grants") {
		t.Fatalf("grant past the burst = %v, want ResourceExhausted naming limits.grants", err)
	}
	if _, err := rep.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"}); err != nil {
		t.Errorf("another principal was limited too: %v", err)
	}
	if n := len(e.entries(t)); n != 3 {
		t.Errorf("ledger has %d records, want 3 grants (refusals by the limiter write nothing)", n)
	}
	clk.Advance(time.Second)
	if _, err := api.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"}); err != nil {
		t.Errorf("grant after the bucket refilled: %v", err)
	}
}

// New requests are rate limited per requester.
func TestLimits_SubmitRate(t *testing.T) {
	t.Parallel()
	clk := &clock{t: fixedNow}
	reg := prometheus.NewRegistry()
	e := newApprEnv(t, apprOptions{limits: &broker.Limits{SubmitRate: 1, SubmitBurst: 1, WatchPoll: time.Hour}, limitNow: clk.Now,
		metrics: broker.NewMetrics(reg, func(string) bool { return true })})
	w := e.workload(orderAPI)
	requestAccess(t, w, "db-admin", time.Hour)
	_, err := w.RequestAccess(context.Background(), &brokerv1.RequestAccessRequest{Entitlement: "db-admin", Duration: durationpb.New(time.Hour), Reason: "again"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.requests") {
		t.Errorf("second request at once = %v, want ResourceExhausted naming limits.requests", err)
	}
	if n := counterValue(t, reg, "writ_limit_refusals_total", "requests"); n != 1 {
		t.Errorf("writ_limit_refusals_total{limit=requests} = %v, want 1", n)
	}
	clk.Advance(time.Second)
	requestAccess(t, w, "db-admin", time.Hour)
}

// A requester may have at most N pending requests, even when asking
// concurrently; the refusal is recorded; a resolved request frees a slot.
func TestLimits_PendingPerRequester(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{limits: &broker.Limits{MaxPendingPerRequester: 2, WatchPoll: time.Hour}})
	w := e.workload(orderAPI)
	const n = 8
	var wg sync.WaitGroup
	codesSeen := make(chan codes.Code, n)
	for range n {
		wg.Go(func() {
			_, err := w.RequestAccess(context.Background(), &brokerv1.RequestAccessRequest{Entitlement: "one-dba", Duration: durationpb.New(time.Hour), Reason: "r"})
			if err != nil && !strings.Contains(err.Error(), "limits.pending_per_requester") {
				t.Errorf("refusal %v does not name the limit", err)
			}
			codesSeen <- status.Code(err)
		})
	}
	wg.Wait()
	close(codesSeen)
	ok, exhausted := 0, 0
	for c := range codesSeen {
		switch c {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			exhausted++
		}
	}
	if ok != 2 || exhausted != n-2 {
		t.Fatalf("%d concurrent requests: %d accepted, %d refused; want 2 and %d", n, ok, exhausted, n-2)
	}
	if got := countPrefix(e.actions(), "request_refused:limit_exceeded"); got != n-2 {
		t.Errorf("ledger has %d request_refused:limit_exceeded, want %d", got, n-2)
	}
	// A person's own requests count separately.
	if _, err := e.person("eve").CreateRequest(context.Background(), &adminv1.CreateRequestRequest{Beneficiary: orderAPI.String(), Entitlement: "one-dba", Duration: durationpb.New(time.Hour), Reason: "r"}); err != nil {
		t.Errorf("eve's request: %v", err)
	}
	list, err := e.person("alice").ListRequests(context.Background(), &adminv1.ListRequestsRequest{Pending: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list.GetRequests() {
		if r.GetRequester() == orderAPI.String() {
			if _, err := e.person("alice").DenyRequest(context.Background(), &adminv1.DenyRequestRequest{Id: r.GetId(), Comment: "no"}); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	requestAccess(t, w, "one-dba", time.Hour)
}

// WatchRequest streams are capped per connection and per principal; a
// slot is freed when a stream ends.
func TestLimits_WatchCaps(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{limits: &broker.Limits{MaxWatchesPerConn: 2, MaxWatchesPerPrincipal: 3, WatchPoll: time.Hour}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn1, conn2 := e.workload(orderAPI), e.workload(orderAPI)
	r := requestAccess(t, conn1, "db-admin", time.Hour)
	watch := func(c brokerv1.BrokerServiceClient, ctx context.Context) error {
		s, err := c.WatchRequest(ctx, &brokerv1.WatchRequestRequest{RequestId: r.GetId()})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	wctx, stopFirst := context.WithCancel(ctx)
	for i := range 2 {
		wc := ctx
		if i == 0 {
			wc = wctx
		}
		if err := watch(conn1, wc); err != nil {
			t.Fatalf("watch %d on one connection: %v", i+1, err)
		}
	}
	if err := watch(conn1, ctx); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.watches_per_connection") {
		t.Fatalf("third watch on one connection = %v, want ResourceExhausted naming limits.watches_per_connection", err)
	}
	if err := watch(conn2, ctx); err != nil {
		t.Fatalf("watch on a second connection: %v", err)
	}
	if err := watch(conn2, ctx); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.watches_per_principal") {
		t.Fatalf("fourth watch of the principal = %v, want ResourceExhausted naming limits.watches_per_principal", err)
	}
	stopFirst()
	// The ended stream's handler returns on its own goroutine: poll.
	testenv.Eventually(t, 10*time.Second, "a watch slot after one watch ended", func() bool {
		err := watch(conn1, ctx)
		if err != nil && status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("watch after one ended = %v", err)
		}
		return err == nil
	})
}

// Watches are woken by the store's changes, not by polling: with the
// fallback poll at an hour, expiry by the background job still reaches a
// waiting workload at once (approval does too: TestApproval_WatchRequest
// runs with the same hourly poll).
func TestWatch_WokenByExpiry(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{limits: &broker.Limits{WatchPoll: time.Hour}})
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "one-dba", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := w.WatchRequest(ctx, &brokerv1.WatchRequestRequest{RequestId: r.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(25 * time.Hour)
	e.srv.ExpireOnce(ctx)
	next, err := stream.Recv()
	if err != nil || next.GetRequest().GetState() != brokerv1.RequestState_REQUEST_STATE_EXPIRED {
		t.Fatalf("watch after expiry: %v %v, want expired", next, err)
	}
}

// counterValue reads the registry's counter name{limit=label}.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if mf.GetName() == name && lp.GetName() == "limit" && lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{limit=%q}", name, label)
	return 0
}
