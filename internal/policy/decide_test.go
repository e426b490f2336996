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
