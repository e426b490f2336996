package broker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/notify"
	"github.com/writ-dev/writ/internal/testenv"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func breakGlass(w brokerv1.BrokerServiceClient, entitlement, reason string, ttl time.Duration) (*brokerv1.BreakGlassResponse, error) {
	req := &brokerv1.BreakGlassRequest{Entitlement: entitlement, Reason: reason, Incident: "INC-7"}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	return w.BreakGlass(context.Background(), req)
}

// webhookSink is a test server receiving the real webhook notifier's posts.
type webhookSink struct {
	mu     sync.Mutex
	events []map[string]any
}

func (s *webhookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var body struct {
		Text string         `json:"text"`
		Writ map[string]any `json:"writ"`
	}
	_ = json.Unmarshal(b, &body)
	s.mu.Lock()
	s.events = append(s.events, body.Writ)
	s.mu.Unlock()
}

// wait polls until the notifier, which delivers on its own goroutine over
// HTTP, has sent a kind event.
func (s *webhookSink) wait(t *testing.T, kind string) map[string]any {
	t.Helper()
	var found map[string]any
	testenv.Eventually(t, 10*time.Second, "a "+kind+" webhook", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, e := range s.events {
			if e["kind"] == kind {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// Acceptance (T36): an allowed workload gets a credential at once, capped,
// marked, recorded with its reason, and the webhook lists the skipped approvers.
func TestBreakGlass_Workload(t *testing.T) {
	t.Parallel()
	sink := &webhookSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	wh, err := notify.New(notify.Config{URL: hook.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close(context.Background())
	e := newApprEnv(t, apprOptions{notifier: wh})
	w := e.workload(orderAPI)
	resp, err := breakGlass(w, "bg-db", "orders db down, on-call fixing", 0)
	if err != nil {
		t.Fatalf("BreakGlass: %v", err)
	}
	c := resp.GetCredential()
	if ttl := c.GetExpiresAt().AsTime().Sub(e.clock.Now()); ttl != 5*time.Minute || !c.GetBreakGlass() {
		t.Errorf("credential ttl %v break_glass %v, want the 5m cap and the mark", ttl, c.GetBreakGlass())
	}
	if !resp.GetReviewDue().AsTime().Equal(e.clock.Now().Add(24*time.Hour)) || resp.GetReviewId() == "" {
		t.Errorf("review %q due %v, want one due in 24h", resp.GetReviewId(), resp.GetReviewDue().AsTime())
	}
	if countPrefix(e.actions(), "break_glass:granted") != 1 {
		t.Errorf("ledger = %v, want one break_glass:granted", e.actions())
	}
	got := sink.wait(t, notify.KindBreakGlassTaken)
	fields, _ := got["fields"].(map[string]any)
	if got["reason"] != "orders db down, on-call fixing" || fields["skipped_approvers"] != "dba" || !strings.Contains(jsonString(got["recipients"]), "security") {
		t.Errorf("webhook = %v, want the reason, skipped approvers dba and reviewers security", got)
	}
	// Break-glass never satisfies an approval.
	if _, err := issue(w, "bg-db", 0); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("normal credential after break-glass = %v, want FailedPrecondition (no approval)", err)
	}
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestBreakGlass_Refusals(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	tests := []struct {
		name        string
		caller      brokerv1.BrokerServiceClient
		entitlement string
		reason      string
		ttl         time.Duration
		want        codes.Code
	}{
		{"workload not allowed", e.workload(stranger), "bg-db", "x", 0, codes.PermissionDenied},
		{"entitlement without break-glass", e.workload(orderAPI), "db-admin", "x", 0, codes.PermissionDenied},
		{"empty reason", e.workload(orderAPI), "bg-db", "", 0, codes.InvalidArgument},
		{"10 KiB reason", e.workload(orderAPI), "bg-db", strings.Repeat("r", 10<<10), 0, codes.InvalidArgument},
		{"ttl above the cap", e.workload(orderAPI), "bg-db", "x", 10 * time.Minute, codes.InvalidArgument},
	}
	for _, tt := range tests {
		if _, err := breakGlass(tt.caller, tt.entitlement, tt.reason, tt.ttl); status.Code(err) != tt.want {
			t.Errorf("%s: BreakGlass = %v, want %v", tt.name, err, tt.want)
		}
	}
	if n := countPrefix(e.actions(), "break_glass_refused:"); n != len(tests) {
		t.Errorf("ledger has %d break_glass_refused records, want %d: %v", n, len(tests), e.actions())
	}
}

// T36: the taker cannot review; the configured reviewers close it.
func TestBreakGlass_Review(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	taken, err := e.person("sam").TakeBreakGlass(context.Background(), &adminv1.TakeBreakGlassRequest{
		Entitlement: "bg-db", Beneficiary: orderAPI.String(), Reason: "db down", Incident: "INC-9"})
	if err != nil {
		t.Fatalf("TakeBreakGlass by an sre: %v", err)
	}
	id := taken.GetRecord().GetId()
	review := func(who, outcome string) (*adminv1.ReviewBreakGlassResponse, error) {
		return e.person(who).ReviewBreakGlass(context.Background(), &adminv1.ReviewBreakGlassRequest{Id: id, Outcome: outcome, Notes: "checked"})
	}
	if _, err := review("sam", "justified"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("self-review = %v, want PermissionDenied (sam is also in security)", err)
	}
	if _, err := review("eve", "justified"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("review by a non-reviewer = %v, want PermissionDenied", err)
	}
	resp, err := review("dave", "justified")
	if err != nil || resp.GetRecord().GetState() != "closed" || resp.GetRecord().GetOutcome() != "justified" {
		t.Fatalf("review by security = %v, %v; want closed justified", resp, err)
	}
	show, err := e.person("dave").GetBreakGlass(context.Background(), &adminv1.GetBreakGlassRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, ev := range show.GetLedger() {
		actions = append(actions, ev.GetAction())
	}
	// The refused attempts are evidence too.
	if strings.Join(actions, ",") != "break_glass,break_glass_review_refused,break_glass_review_refused,break_glass_review,break_glass_closed" {
		t.Errorf("ledger evidence = %v", actions)
	}
	if countPrefix(e.actions(), "break_glass_review_refused:") != 2 {
		t.Errorf("refused reviews not recorded: %v", e.actions())
	}
}

// Acceptance with an injected clock: an overdue review escalates once and
// sets the metric; the taker's next break-glass is refused until the review
// is closed, then allowed.
func TestBreakGlass_OverdueBlocksAndEscalates(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newApprEnv(t, apprOptions{metrics: broker.NewMetrics(reg, nil)})
	w := e.workload(orderAPI)
	first, err := breakGlass(w, "bg-db", "incident", 0)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(25 * time.Hour)
	e.srv.EscalateOnce(context.Background())
	e.srv.EscalateOnce(context.Background()) // a second pass must not escalate again
	if n := countPrefix(e.notifier.kinds(), "breakglass.overdue"); n != 1 {
		t.Errorf("overdue notifications = %d, want exactly 1: %v", n, e.notifier.kinds())
	}
	if got := gaugeValue(t, reg, "writ_breakglass_reviews_overdue"); got != 1 {
		t.Errorf("writ_breakglass_reviews_overdue = %v, want 1", got)
	}
	_, err = breakGlass(w, "bg-db", "again", 0)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), first.GetReviewId()) {
		t.Fatalf("break-glass while overdue = %v, want FailedPrecondition naming %s", err, first.GetReviewId())
	}
	if _, err := e.person("dave").ReviewBreakGlass(context.Background(), &adminv1.ReviewBreakGlassRequest{Id: first.GetReviewId(), Outcome: "justified"}); err != nil {
		t.Fatal(err)
	}
	if _, err := breakGlass(w, "bg-db", "again", 0); err != nil {
		t.Errorf("break-glass after the review closed = %v, want allowed", err)
	}
	e.srv.EscalateOnce(context.Background())
	if got := gaugeValue(t, reg, "writ_breakglass_reviews_overdue"); got != 0 {
		t.Errorf("writ_breakglass_reviews_overdue after closing = %v, want 0", got)
	}
}

// gaugeValue reads a gauge from a registry.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// Acceptance: an unjustified verdict revokes the still-live Vault token.
func TestBreakGlass_UnjustifiedRevokesVaultToken(t *testing.T) {
	t.Parallel()
	iss, _ := vaultIssuer(t)
	e := newApprEnv(t, apprOptions{issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: iss}})
	resp, err := breakGlass(e.workload(orderAPI), "bg-vault", "suspicious", 0)
	if err != nil {
		t.Fatal(err)
	}
	accessor := resp.GetCredential().GetReference()
	ttl, meta, err := iss.LookupAccessor(context.Background(), accessor)
	if err != nil || ttl > 5*time.Minute || meta["break_glass"] != "true" {
		t.Fatalf("token at Vault: ttl %v meta %v err %v; want ≤ 5m and break_glass=true", ttl, meta, err)
	}
	rev, err := e.person("dave").ReviewBreakGlass(context.Background(), &adminv1.ReviewBreakGlassRequest{Id: resp.GetReviewId(), Outcome: "unjustified", Notes: "no incident"})
	if err != nil {
		t.Fatal(err)
	}
	if rev.GetRecord().GetOutcome() != "unjustified" || len(rev.GetResults()) != 1 || rev.GetResults()[0].GetOutcome() != "revoked" {
		t.Errorf("review = %v, want unjustified with the token revoked", rev)
	}
	if _, _, err := iss.LookupAccessor(context.Background(), accessor); err == nil {
		t.Error("token still valid at Vault after an unjustified verdict")
	}
}
