package broker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

type nopLedger struct{}

func (nopLedger) Append(context.Context, audit.Event) (audit.Entry, error) { return audit.Entry{}, nil }

// Each rule of the table, for each kind of caller: who is let through.
func TestAuthorize_EveryRule(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	op := spiffeid.RequireFromPath(td, "/ops/admin")
	s, err := New(Config{Policy: &approval.Policy{TrustDomain: "example.org"}, Ledger: nopLedger{},
		Operators: []spiffeid.ID{op}, AuditorGroups: []string{"auditors"}})
	if err != nil {
		t.Fatal(err)
	}
	callers := map[string]caller{
		"workload": {workload: spiffeid.RequireFromPath(td, "/ns/orders/api")},
		"operator": {workload: op},
		"nobody":   {person: &Person{Principal: "oidc:x#nobody"}},
		"approver": {person: &Person{Principal: "oidc:x#alice", Groups: []string{"dba"}}},
		"auditor":  {person: &Person{Principal: "oidc:x#audrey", Groups: []string{"auditors"}}},
	}
	const (
		wl     = "workload operator"
		staff  = "operator nobody approver auditor"
		people = "nobody approver auditor"
	)
	want := map[string]string{
		brokerv1.BrokerService_IssueCredential_FullMethodName:   wl,
		brokerv1.BrokerService_RequestAccess_FullMethodName:     wl,
		brokerv1.BrokerService_WatchRequest_FullMethodName:      wl,
		brokerv1.BrokerService_BreakGlass_FullMethodName:        wl,
		brokerv1.BrokerService_RenewCredential_FullMethodName:   wl,
		brokerv1.BrokerService_ReleaseCredential_FullMethodName: wl,
		adminv1.AdminService_ListEntitlements_FullMethodName:    staff,
		adminv1.AdminService_WhoAmI_FullMethodName:              staff,
		adminv1.AdminService_ExplainPolicy_FullMethodName:       staff,
		adminv1.AdminService_ListRequests_FullMethodName:        staff,
		adminv1.AdminService_GetRequest_FullMethodName:          staff,
		adminv1.AdminService_CreateRequest_FullMethodName:       people,
		adminv1.AdminService_ApproveRequest_FullMethodName:      people,
		adminv1.AdminService_DenyRequest_FullMethodName:         people,
		adminv1.AdminService_RevokeRequest_FullMethodName:       staff,
		adminv1.AdminService_TakeBreakGlass_FullMethodName:      people,
		adminv1.AdminService_ListBreakGlass_FullMethodName:      staff,
		adminv1.AdminService_GetBreakGlass_FullMethodName:       staff,
		adminv1.AdminService_ReviewBreakGlass_FullMethodName:    people,
		adminv1.AdminService_ExportLedger_FullMethodName:        "operator auditor",
		adminv1.AdminService_SearchLedger_FullMethodName:        "operator auditor",
		adminv1.AdminService_Snapshot_FullMethodName:            "operator auditor",
		adminv1.AdminService_ProveRecord_FullMethodName:         "operator auditor",
	}
	for method, rule := range rules {
		if rule.Public {
			continue
		}
		allowed, ok := want[method]
		if !ok {
			t.Errorf("%s has a rule but no expectation in this test: add one", method)
			continue
		}
		for name, c := range callers {
			got, err := s.authorize(method, rule, c)
			wantOK := slices.Contains(strings.Fields(allowed), name)
			if (err == nil) != wantOK {
				t.Errorf("authorize(%s, %s) err = %v, want allowed=%v", methodName(method), name, err, wantOK)
			}
			if err != nil && s.toStatus(context.Background(), err) == nil {
				t.Errorf("authorize(%s, %s): refusal maps to no status", methodName(method), name)
			}
			if err == nil && (got.operator != (name == "operator") || got.auditor != (name == "auditor")) {
				t.Errorf("authorize(%s, %s) roles = operator %v auditor %v", methodName(method), name, got.operator, got.auditor)
			}
		}
	}
}

// The table can say "operators, or people in the auditor groups" (the
// ledger's read RPCs) and "people in these groups".
func TestAuthorize_GroupRules(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	op := spiffeid.RequireFromPath(td, "/ops/admin")
	s, err := New(Config{Policy: &approval.Policy{TrustDomain: "example.org"}, Ledger: nopLedger{},
		Operators: []spiffeid.ID{op}, AuditorGroups: []string{"auditors", "compliance"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		rule   Rule
		caller caller
		want   error
	}{
		{"auditor rule admits an operator", Rule{Operators: true, Auditors: true}, caller{workload: op}, nil},
		{"auditor rule admits the second auditor group", Rule{Operators: true, Auditors: true}, caller{person: &Person{Groups: []string{"compliance"}}}, nil},
		{"auditor rule refuses an approver", Rule{Operators: true, Auditors: true}, caller{person: &Person{Groups: []string{"dba"}}}, errNotPermitted},
		{"auditor rule refuses another workload", Rule{Operators: true, Auditors: true}, caller{workload: spiffeid.RequireFromPath(td, "/x")}, errNotOperator},
		{"group rule admits a member", Rule{PeopleIn: []string{"sre"}}, caller{person: &Person{Groups: []string{"dev", "sre"}}}, nil},
		{"group rule refuses a non-member", Rule{PeopleIn: []string{"sre"}}, caller{person: &Person{Groups: []string{"dev"}}}, errNotPermitted},
		{"group rule refuses a workload", Rule{PeopleIn: []string{"sre"}}, caller{workload: op}, errNotPerson},
		{"an operator's JWT-SVID is not an operator", Rule{Operators: true}, caller{workload: op, bearer: true}, errNotOperator},
		{"the zero rule admits nobody", Rule{}, caller{workload: op}, errNotOperator},
		{"the zero rule admits no person", Rule{}, caller{person: &Person{Groups: []string{"auditors"}}}, errNotPermitted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.authorize("/x.v1.S/M", tt.rule, tt.caller)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("authorize = %v, want %v", err, tt.want)
			}
		})
	}
}

// The gate fails closed on a method without a rule, and lets public
// methods through without asking for an identity.
func TestAdmit_UnknownAndPublic(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Policy: &approval.Policy{TrustDomain: "example.org"}, Ledger: nopLedger{}})
	if err != nil {
		t.Fatal(err)
	}
	authCalls := 0
	auth := func(ctx context.Context, _ string) (context.Context, error) {
		authCalls++
		return withCaller(ctx, caller{workload: spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString("example.org"), "/w")}), nil
	}
	if _, err := s.admit(context.Background(), "/writ.admin.v1.AdminService/NotInTheTable", auth); status.Code(err) != codes.PermissionDenied {
		t.Errorf("method without a rule = %v, want PermissionDenied", err)
	}
	if _, err := s.admit(context.Background(), healthCheck, auth); err != nil {
		t.Errorf("health check = %v, want admitted", err)
	}
	if authCalls != 0 {
		t.Errorf("authentication ran %d times for a method without a rule or a public one", authCalls)
	}
}
