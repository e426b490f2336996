package broker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/policy"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

const minute = time.Minute

// panickyIssuer panics in Issue while armed: a handler bug.
type panickyIssuer struct {
	*fakeIssuer
	armed atomic.Bool
}

func (p *panickyIssuer) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	if p.armed.Load() {
		var m map[string]int
		//lint:ignore SA5000 a deliberate runtime panic
		m["boom"]++ // a runtime panic, as a nil dereference would be
	}
	return p.fakeIssuer.Issue(ctx, g)
}

// TestServer_RecoversHandlerPanic: a handler that panics fails that call
// with INTERNAL; the panic is logged, counted and recorded in the ledger
// with the caller; the broker serves the next call.
func TestServer_RecoversHandlerPanic(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	metrics := broker.NewMetrics(reg, func(string) bool { return true })
	issuer := &panickyIssuer{fakeIssuer: &fakeIssuer{}}
	e := newEnv(t, envOptions{issuers: map[approval.CredentialKind]broker.Issuer{approval.KindJWT: issuer}, metrics: metrics})
	c := e.client(t, orderAPI)

	issuer.armed.Store(true)
	_, err := c.IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders", Ttl: durationpb.New(minute)})
	if status.Code(err) != codes.Internal {
		t.Fatalf("IssueCredential() with a panicking issuer = %v, want Internal", err)
	}
	if strings.Contains(err.Error(), "boom") || strings.Contains(err.Error(), "goroutine") {
		t.Errorf("error %q leaks the panic to the caller", err)
	}
	if got := panicsRecovered(t, reg, "rpc"); got != 1 {
		t.Errorf("writ_panics_recovered_total{where=rpc} = %v, want 1", got)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "recovered from a panic") || !strings.Contains(logs, "assignment to entry in nil map") {
		t.Errorf("logs do not record the panic:\n%s", logs)
	}
	var recorded bool
	for _, en := range e.entries(t) {
		if en.Action == broker.ActionPanicRecovered && en.Actor == orderAPI.String() && en.Details["method"] == brokerv1.BrokerService_IssueCredential_FullMethodName {
			recorded = true
		}
	}
	if !recorded {
		t.Errorf("ledger = %+v, want a %s record for %s", e.entries(t), broker.ActionPanicRecovered, orderAPI)
	}

	issuer.armed.Store(false)
	if _, err := c.IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders", Ttl: durationpb.New(minute)}); err != nil {
		t.Fatalf("IssueCredential() after the panic = %v, want the broker still serving", err)
	}
}

// panicsRecovered returns writ_panics_recovered_total{where} from reg.
func panicsRecovered(t *testing.T, reg *prometheus.Registry, where string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "writ_panics_recovered_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "where" && l.GetValue() == where {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// fakeStream is the least of a grpc.ServerStream for calling a stream
// interceptor directly.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

// TestServer_RecoversStreamPanic: a streaming handler that panics fails
// that stream with INTERNAL, is counted, and the interceptor serves the next
// stream. The method is public, so no caller is known and nothing is
// recorded in the ledger.
func TestServer_RecoversStreamPanic(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	srv := newServer(t, broker.NewMetrics(reg, func(string) bool { return true }))
	intercept := srv.StreamInterceptor()
	info := &grpc.StreamServerInfo{FullMethod: "/grpc.health.v1.Health/Watch", IsServerStream: true}
	stream := fakeStream{ctx: context.Background()}
	err := intercept(nil, stream, info, func(any, grpc.ServerStream) error { panic("handler bug") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("stream with a panicking handler = %v, want Internal", err)
	}
	if err := intercept(nil, stream, info, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Fatalf("next stream = %v, want nil", err)
	}
	if got := panicsRecovered(t, reg, "rpc"); got != 1 {
		t.Errorf("writ_panics_recovered_total{where=rpc} = %v, want 1", got)
	}
	srv.HandshakePanic("verify client X509-SVID", "boom")
	if got := panicsRecovered(t, reg, "handshake"); got != 1 {
		t.Errorf("writ_panics_recovered_total{where=handshake} = %v, want 1", got)
	}
	// Unary too, through the person interceptor: the panic is in the handler.
	unary := srv.PersonUnaryInterceptor()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs())
	_, err = unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}, func(context.Context, any) (any, error) { panic("bug") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("unary with a panicking handler = %v, want Internal", err)
	}
}

func newServer(t *testing.T, m *broker.Metrics) *broker.Server {
	t.Helper()
	pol, err := policy.Parse("policy.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Config{Policy: pol, Ledger: failingLedger{}, Issuers: map[approval.CredentialKind]broker.Issuer{approval.KindJWT: &fakeIssuer{}}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestServer_RefusesUnsafeText covers T43 at the API edge: identifiers with
// control or format characters and free text with them (except newlines)
// are refused with INVALID_ARGUMENT before any handler runs; a multi-line
// reason is accepted.
func TestServer_RefusesUnsafeText(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	w := e.workload(orderAPI)
	tests := []struct {
		name     string
		call     func() error
		wantCode codes.Code
	}{
		{"entitlement with an ANSI escape", func() error {
			_, err := w.IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders\x1b[2J"})
			return err
		}, codes.InvalidArgument},
		{"reason with a bidi override", func() error {
			_, err := w.RequestAccess(context.Background(), &brokerv1.RequestAccessRequest{Entitlement: "db-admin", Duration: durationpb.New(minute), Reason: "fix \u202eoutage"})
			return err
		}, codes.InvalidArgument},
		{"reason with a carriage return", func() error {
			_, err := w.RequestAccess(context.Background(), &brokerv1.RequestAccessRequest{Entitlement: "db-admin", Duration: durationpb.New(minute), Reason: "fix\rAPPROVED"})
			return err
		}, codes.InvalidArgument},
		{"ticket with a newline", func() error {
			_, err := w.RequestAccess(context.Background(), &brokerv1.RequestAccessRequest{Entitlement: "db-admin", Duration: durationpb.New(minute), Reason: "fix", Ticket: "INC-1\nstate: approved"})
			return err
		}, codes.InvalidArgument},
		{"beneficiary with a zero-width space", func() error {
			_, err := e.person("alice").CreateRequest(context.Background(), &adminv1.CreateRequestRequest{Beneficiary: orderAPI.String() + "\u200b", Entitlement: "db-admin", Duration: durationpb.New(minute), Reason: "fix"})
			return err
		}, codes.InvalidArgument},
		{"comment with an ANSI escape", func() error {
			_, err := e.person("alice").ApproveRequest(context.Background(), &adminv1.ApproveRequestRequest{Id: "r_x", Comment: "ok\x1b[32m APPROVED"})
			return err
		}, codes.InvalidArgument},
		{"multi-line reason is accepted", func() error {
			_, err := w.RequestAccess(context.Background(), &brokerv1.RequestAccessRequest{Entitlement: "db-admin", Duration: durationpb.New(minute), Reason: "outage INC-42\nneed to rotate the table"})
			return err
		}, codes.OK},
	}
	for _, tt := range tests {
		err := tt.call()
		if got := status.Code(err); got != tt.wantCode {
			t.Errorf("%s: code = %v (%v), want %v", tt.name, got, err, tt.wantCode)
			continue
		}
		if err != nil && strings.ContainsAny(status.Convert(err).Message(), "\x1b\u202e\u200b\r") {
			t.Errorf("%s: message %q echoes the unsafe character", tt.name, status.Convert(err).Message())
		}
	}
}
