package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// A new RPC cannot be open by accident: every method of every Writ service
// in the proto registry, and every method registered on a server built
// like writd's listeners (workload and admin services, health, reflection),
// has an authorization rule; and no rule names a method that does not exist.
func TestRules_EveryMethodHasARule(t *testing.T) {
	t.Parallel()
	known := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "writ.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				m := "/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name())
				known[m] = true
				if _, ok := broker.RuleFor(m); !ok {
					t.Errorf("%s has no authorization rule: add one to the table in broker/authz.go", m)
				}
			}
		}
		return true
	})
	if len(known) == 0 {
		t.Fatal("no Writ service in the proto registry")
	}

	pol := &approval.Policy{TrustDomain: "example.org"}
	srv, err := broker.New(broker.Config{Policy: pol, Ledger: nopLedger{}})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	reflection.Register(gs)
	for svc, info := range gs.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			known[full] = true
			if _, ok := broker.RuleFor(full); !ok {
				t.Errorf("registered method %s has no authorization rule", full)
			}
		}
	}
	for _, m := range broker.Methods() {
		if !known[m] {
			t.Errorf("rule for %s names no method of any registered service", m)
		}
	}
}

type nopLedger struct{}

func (nopLedger) Append(context.Context, audit.Event) (audit.Entry, error) { return audit.Entry{}, nil }

// The interceptor enforces the table over real gRPC: every admin method
// called by a workload that is not an operator is refused before its
// handler, and admitted for the operator.
func TestAuthz_InterceptorOverGRPC(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plain, op := e.workloadConn(orderAPI), e.workloadConn(operator)
	methods := adminv1.AdminService_ServiceDesc.Methods
	if len(methods) == 0 {
		t.Fatal("no admin methods")
	}
	for _, m := range methods {
		full := "/" + adminv1.AdminService_ServiceDesc.ServiceName + "/" + m.MethodName
		rule, _ := broker.RuleFor(full)
		err := plain.Invoke(ctx, full, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s by a workload that is not an operator = %v, want PermissionDenied", m.MethodName, err)
		}
		err = op.Invoke(ctx, full, &emptypb.Empty{}, &emptypb.Empty{})
		denied := status.Code(err) == codes.PermissionDenied || status.Code(err) == codes.Unauthenticated
		if rule.Operators && denied {
			t.Errorf("%s by the operator = %v, want admitted", m.MethodName, err)
		}
		if !rule.Operators && !denied {
			t.Errorf("%s by the operator = %v, want PermissionDenied (people only)", m.MethodName, err)
		}
	}
	// A person in no group reaches the read methods but sees nothing.
	nobody := e.person("nobody")
	if _, err := nobody.ListEntitlements(ctx, &adminv1.ListEntitlementsRequest{}); err != nil {
		t.Errorf("ListEntitlements by a person in no group: %v", err)
	}
}

// People see the requests they asked for, benefit from or may review; the
// auditors group and operators see all; everything else is NotFound, the
// same as a request that does not exist.
func TestAuthz_RequestVisibility(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	ctx := context.Background()
	w := e.workload(orderAPI)
	byWorkload := requestAccess(t, w, "db-admin", time.Hour) // approvers: dba
	e.clock.Advance(time.Second)
	resp, err := e.person("eve").CreateRequest(ctx, &adminv1.CreateRequestRequest{Beneficiary: orderAPI.String(),
		Entitlement: "two-stage", Duration: durationpb.New(time.Hour), Reason: "secret reason", Ticket: "SEC-1"}) // dba, then security
	if err != nil {
		t.Fatal(err)
	}
	byEve := resp.GetRequest()
	opAdmin := adminv1.NewAdminServiceClient(e.workloadConn(operator))

	tests := []struct {
		who  string
		cli  adminv1.AdminServiceClient
		sees []string
	}{
		{"nobody (no group)", e.person("nobody"), nil},
		{"eve (requester)", e.person("eve"), []string{byEve.GetId()}},
		{"dave (security approver)", e.person("dave"), []string{byEve.GetId()}},
		{"alice (dba approver)", e.person("alice"), []string{byEve.GetId(), byWorkload.GetId()}},
		{"audrey (auditor)", e.person("audrey"), []string{byEve.GetId(), byWorkload.GetId()}},
		{"operator", opAdmin, []string{byEve.GetId(), byWorkload.GetId()}},
	}
	for _, tt := range tests {
		list, err := tt.cli.ListRequests(ctx, &adminv1.ListRequestsRequest{})
		if err != nil {
			t.Fatalf("%s: ListRequests: %v", tt.who, err)
		}
		var got []string
		for _, r := range list.GetRequests() {
			got = append(got, r.GetId())
		}
		if strings.Join(got, ",") != strings.Join(tt.sees, ",") {
			t.Errorf("%s lists %v, want %v (newest first)", tt.who, got, tt.sees)
		}
		for _, id := range []string{byEve.GetId(), byWorkload.GetId()} {
			_, err := tt.cli.GetRequest(ctx, &adminv1.GetRequestRequest{Id: id})
			visible := strings.Contains(strings.Join(tt.sees, ","), id)
			if visible && err != nil {
				t.Errorf("%s: GetRequest(%s) = %v, want it", tt.who, id, err)
			}
			if !visible && (status.Code(err) != codes.NotFound || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "two-stage")) {
				t.Errorf("%s: GetRequest(%s) = %v, want a bare NotFound", tt.who, id, err)
			}
		}
	}
	// Not visible and not existing read the same.
	_, hidden := e.person("nobody").GetRequest(ctx, &adminv1.GetRequestRequest{Id: byEve.GetId()})
	_, missing := e.person("nobody").GetRequest(ctx, &adminv1.GetRequestRequest{Id: "r_doesnotexist"})
	if status.Code(hidden) != status.Code(missing) || strings.Replace(hidden.Error(), byEve.GetId(), "r_doesnotexist", 1) != missing.Error() {
		t.Errorf("hidden %v and missing %v differ", hidden, missing)
	}
	mine, err := e.person("alice").ListRequests(ctx, &adminv1.ListRequestsRequest{Mine: true})
	if err != nil || len(mine.GetRequests()) != 0 {
		t.Errorf("alice's own requests = %v, %v; want none", mine, err)
	}
	pending, err := e.person("dave").ListRequests(ctx, &adminv1.ListRequestsRequest{Pending: true, PageSize: 1})
	if err != nil || len(pending.GetRequests()) != 1 || pending.GetRequests()[0].GetId() != byEve.GetId() {
		t.Errorf("dave's pending page of 1 = %v, %v", pending, err)
	}
}

// Break-glass uses: the taker and the entitlement's reviewers see them;
// the skipped approvers and people in no group do not.
func TestAuthz_BreakGlassVisibility(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{})
	ctx := context.Background()
	if _, err := breakGlass(e.workload(orderAPI), "bg-db", "prod down", time.Minute); err != nil {
		t.Fatal(err)
	}
	taken, err := e.person("sam").TakeBreakGlass(ctx, &adminv1.TakeBreakGlassRequest{Entitlement: "bg-db", Reason: "prod down", Incident: "INC-1", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	samID := taken.GetRecord().GetId()
	tests := []struct {
		who  string
		cli  adminv1.AdminServiceClient
		want int
	}{
		{"nobody", e.person("nobody"), 0},
		{"eve", e.person("eve"), 0},
		{"alice (dba, skipped approver)", e.person("alice"), 0},
		{"dave (security reviewer)", e.person("dave"), 2},
		{"sam (taker and reviewer)", e.person("sam"), 2},
		{"audrey (auditor)", e.person("audrey"), 2},
		{"operator", adminv1.NewAdminServiceClient(e.workloadConn(operator)), 2},
	}
	for _, tt := range tests {
		list, err := tt.cli.ListBreakGlass(ctx, &adminv1.ListBreakGlassRequest{})
		if err != nil || len(list.GetRecords()) != tt.want {
			t.Errorf("%s: ListBreakGlass = %d records, %v; want %d", tt.who, len(list.GetRecords()), err, tt.want)
		}
		_, err = tt.cli.GetBreakGlass(ctx, &adminv1.GetBreakGlassRequest{Id: samID})
		if (tt.want > 0) != (err == nil) || (err != nil && status.Code(err) != codes.NotFound) {
			t.Errorf("%s: GetBreakGlass = %v", tt.who, err)
		}
	}
}
