package policy

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/approval"
)

// TestPolicy_Decide runs approval.Policy.Decide over testdata/valid.yaml.
func TestPolicy_Decide(t *testing.T) {
	t.Parallel()
	p, err := Load(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatalf("Load() err = %v", err)
	}
	tests := []struct {
		name        string
		principal   approval.Principal
		entitlement string
		ttl         time.Duration
		want        approval.Grant
		wantErr     error
		wantMsg     string
	}{
		{
			name: "auto approval under the condition", principal: "spiffe://writ.dev/ns/prod/api", entitlement: "demo", ttl: 10 * time.Minute,
			want: approval.Grant{
				ID: "g1", Principal: "spiffe://writ.dev/ns/prod/api", Entitlement: "demo",
				Recipe: approval.Recipe{Kind: approval.KindJWT, Audience: []string{"orders-api"}},
				Rule:   "entitlements.demo.requesters[1]", TTL: 10 * time.Minute, IssuedAt: now, Expires: now.Add(10 * time.Minute),
			},
		},
		{
			name: "auto approval without a condition uses max_ttl", principal: "spiffe://writ.dev/ns/prod/sa/orders", entitlement: "orders-db.read",
			want: approval.Grant{
				ID: "g1", Principal: "spiffe://writ.dev/ns/prod/sa/orders", Entitlement: "orders-db.read",
				Recipe: approval.Recipe{Kind: approval.KindVaultToken, Role: "writ-orders"},
				Rule:   "entitlements.orders-db.read.requesters[0]", TTL: time.Hour, IssuedAt: now, Expires: now.Add(time.Hour),
			},
		},
		{name: "principal not eligible", principal: "spiffe://writ.dev/ns/production/api", entitlement: "demo", wantErr: approval.ErrNotEligible},
		{name: "ttl above max_ttl names the limit", principal: "spiffe://writ.dev/demo", entitlement: "demo", ttl: time.Hour,
			wantErr: approval.ErrTTLTooLong, wantMsg: "max_ttl 15m0s"},
		{name: "condition false", principal: "spiffe://writ.dev/demo", entitlement: "demo", ttl: 12 * time.Minute,
			wantErr: approval.ErrConditionFalse, wantMsg: `condition "request.ttl <= duration(\"10m\")"`},
		{name: "unknown entitlement", principal: "spiffe://writ.dev/demo", entitlement: "nope", wantErr: approval.ErrUnknownEntitlement},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := p.Decide(context.Background(), "g1", tt.principal, tt.entitlement, tt.ttl, now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Decide() err = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("Decide() err = %v, want it to mention %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide() err = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPolicy_Decide_ConditionErrorDenies checks that a condition that fails
// to evaluate denies rather than allows.
func TestPolicy_Decide_ConditionErrorDenies(t *testing.T) {
	t.Parallel()
	doc := with("      mode: auto\n", "      mode: auto\n      condition: '1 / (size(request.path) - 5) == 1'\n")
	p, err := Parse("policy.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse() err = %v", err)
	}
	_, err = p.Decide(context.Background(), "g1", "spiffe://writ.dev/demo", "demo", 0, now)
	if err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Errorf("Decide() err = %v, want a division by zero error", err)
	}
}

// TestPolicy_Approvers runs a request for orders-db.write from
// testdata/valid.yaml through the file's reason and ticket rules, its two
// stages and a grant under the approval.
func TestPolicy_Approvers(t *testing.T) {
	t.Parallel()
	p, err := Load(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatalf("Load() err = %v", err)
	}
	e, err := p.Lookup("orders-db.write")
	if err != nil {
		t.Fatal(err)
	}
	valid := approval.RequestInput{
		ID: "r1", Requester: "oidc:https://idp#rita", Beneficiary: "spiffe://writ.dev/ns/prod/sa/migrate",
		Entitlement: "orders-db.write", Duration: 2 * time.Hour, Reason: "backfill the new column", Ticket: "CHG-42",
	}
	refused := []struct {
		name    string
		change  func(*approval.RequestInput)
		wantErr error
	}{
		{"reason too short for the pattern", func(in *approval.RequestInput) { in.Reason = "backfill" }, approval.ErrInvalid},
		{"reason over max_len 500", func(in *approval.RequestInput) { in.Reason = "b" + strings.Repeat("x", 500) }, approval.ErrInvalid},
		{"ticket not INC or CHG", func(in *approval.RequestInput) { in.Ticket = "JIRA-42" }, approval.ErrInvalid},
		{"duration above the 8h window", func(in *approval.RequestInput) { in.Duration = 9 * time.Hour }, approval.ErrTTLTooLong},
	}
	for _, tt := range refused {
		in := valid
		tt.change(&in)
		if _, err := approval.NewRequest(in, e, now); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: NewRequest() err = %v, want %v", tt.name, err, tt.wantErr)
		}
	}

	r, err := approval.NewRequest(valid, e, now)
	if err != nil {
		t.Fatalf("NewRequest() err = %v", err)
	}
	if want := now.Add(12 * time.Hour); !r.PendingUntil.Equal(want) {
		t.Errorf("PendingUntil = %v, want pending_ttl 12h later (%v)", r.PendingUntil, want)
	}
	at := now.Add(time.Hour)
	for i, rev := range []approval.Review{
		{Reviewer: "oidc:https://idp#alice", Groups: []string{"dba"}, Decision: approval.DecisionApprove},
		{Reviewer: "oidc:https://idp#bob", Groups: []string{"dba", "sre"}, Decision: approval.DecisionApprove},
		{Reviewer: "oidc:https://idp#carol", Groups: []string{"sre"}, Decision: approval.DecisionApprove},
	} {
		if _, err := approval.ApplyReview(&r, e, rev, at); err != nil {
			t.Fatalf("review %d: ApplyReview() err = %v", i, err)
		}
	}
	if r.State != approval.StateApproved || !r.WindowEnd.Equal(at.Add(2*time.Hour)) {
		t.Fatalf("after three reviews: %s until %v, want approved until %v", r.State, r.WindowEnd, at.Add(2*time.Hour))
	}
	g, err := p.DecideUnder(context.Background(), "g1", r, 0, at)
	if err != nil || g.TTL != 30*time.Minute || g.RequestID != "r1" || g.Recipe.Role != "writ-orders-write" {
		t.Errorf("DecideUnder() = %+v, %v; want a 30m writ-orders-write grant under r1", g, err)
	}
}
