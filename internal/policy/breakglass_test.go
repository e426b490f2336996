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

// breakGlassBlock is a valid break_glass block for the test entitlement:
// "    break_glass:" on line 14, its fields on lines 15 to 18.
const breakGlassBlock = `    break_glass:
      allowed: [spiffe://writ.dev/demo, sre]
      max_ttl: 5m
      review_within: 24h
      reviewers: {groups: [security], min: 1}
`

// breakGlass returns the valid document with breakGlassBlock appended to
// the entitlement and each old text of the block replaced by new.
func breakGlass(oldnew ...string) string {
	block := breakGlassBlock
	for i := 0; i+1 < len(oldnew); i += 2 {
		if !strings.Contains(block, oldnew[i]) {
			panic("break_glass block has no " + oldnew[i])
		}
		block = strings.Replace(block, oldnew[i], oldnew[i+1], 1)
	}
	return head + entitlement + block
}

func TestParse_BreakGlass(t *testing.T) {
	t.Parallel()
	demo := approval.Requester{Pattern: "spiffe://writ.dev/demo", ID: "spiffe://writ.dev/demo"}
	oncall := approval.Requester{Pattern: "spiffe://writ.dev/ns/oncall/*", ID: "spiffe://writ.dev/ns/oncall", Prefix: true}
	tests := []struct {
		name string
		doc  string
		want *approval.BreakGlassRule
	}{
		{"no break_glass block means not allowed", head + entitlement, nil},
		{"block_while_overdue defaults to true", breakGlass(), &approval.BreakGlassRule{
			Workloads: []approval.Requester{demo}, Groups: []string{"sre"}, MaxTTL: 5 * time.Minute, ReviewWithin: 24 * time.Hour,
			ReviewerGroups: []string{"security"}, MinReviewers: 1, BlockWhileOverdue: true,
		}},
		{"every field in block style", breakGlass("      allowed: [spiffe://writ.dev/demo, sre]\n",
			"      allowed:\n        - sre\n        - spiffe://writ.dev/ns/oncall/*\n        - oncall-leads\n        - spiffe://writ.dev/demo\n",
			"{groups: [security], min: 1}", "\n        groups: [security, audit]\n        min: 10",
			"      max_ttl: 5m\n", "      max_ttl: 14m59s\n      block_while_overdue: false\n",
			"review_within: 24h", "review_within: 168h"), &approval.BreakGlassRule{
			Workloads: []approval.Requester{oncall, demo}, Groups: []string{"sre", "oncall-leads"}, MaxTTL: 14*time.Minute + 59*time.Second,
			ReviewWithin: 168 * time.Hour, ReviewerGroups: []string{"security", "audit"}, MinReviewers: 10, BlockWhileOverdue: false,
		}},
		{"people only", breakGlass("[spiffe://writ.dev/demo, sre]", "[sre]"), &approval.BreakGlassRule{
			Groups: []string{"sre"}, MaxTTL: 5 * time.Minute, ReviewWithin: 24 * time.Hour,
			ReviewerGroups: []string{"security"}, MinReviewers: 1, BlockWhileOverdue: true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse("policy.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse() err = %v", err)
			}
			if diff := cmp.Diff(tt.want, p.Entitlements["demo"].BreakGlass); diff != "" {
				t.Errorf("BreakGlass mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPolicy_DecideBreakGlass runs approval.Policy.DecideBreakGlass over
// the break_glass block of orders-db.write in testdata/valid.yaml.
func TestPolicy_DecideBreakGlass(t *testing.T) {
	t.Parallel()
	p, err := Load(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatalf("Load() err = %v", err)
	}
	const (
		orders  = approval.Principal("spiffe://writ.dev/ns/prod/sa/orders")
		migrate = approval.Principal("spiffe://writ.dev/ns/prod/sa/migrate")
		sam     = approval.Principal("oidc:https://idp#sam")
	)
	tests := []struct {
		name    string
		in      approval.BreakGlassInput
		wantErr error
		wantMsg string
		want    approval.Grant
	}{
		{name: "allowed workload for itself", in: approval.BreakGlassInput{Taker: orders, Reason: "orders are failing"},
			want: approval.Grant{ID: "g1", Principal: orders, Entitlement: "orders-db.write", Recipe: approval.Recipe{Kind: approval.KindVaultToken, Role: "writ-orders-write"},
				Rule: "entitlements.orders-db.write.break_glass", TTL: 5 * time.Minute, IssuedAt: now, Expires: now.Add(5 * time.Minute), BreakGlass: true, NotAfter: now.Add(5 * time.Minute)}},
		{name: "sre person for the migrate workload", in: approval.BreakGlassInput{Taker: sam, TakerGroups: []string{"sre"}, Beneficiary: migrate, Reason: "stuck migration", TTL: time.Minute},
			want: approval.Grant{ID: "g1", Principal: migrate, Entitlement: "orders-db.write", Recipe: approval.Recipe{Kind: approval.KindVaultToken, Role: "writ-orders-write"},
				Rule: "entitlements.orders-db.write.break_glass", TTL: time.Minute, IssuedAt: now, Expires: now.Add(time.Minute), BreakGlass: true, NotAfter: now.Add(5 * time.Minute)}},
		{name: "migrate workload is a requester but not allowed to break glass", in: approval.BreakGlassInput{Taker: migrate, Reason: "x"}, wantErr: approval.ErrNotEligible},
		{name: "ttl above the break-glass cap names it", in: approval.BreakGlassInput{Taker: orders, Reason: "x", TTL: 10 * time.Minute},
			wantErr: approval.ErrTTLTooLong, wantMsg: "break-glass max_ttl 5m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.in
			in.ID, in.Entitlement = "bg_1", "orders-db.write"
			bg, g, err := p.DecideBreakGlass(context.Background(), "g1", in, now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("DecideBreakGlass() err = %v, want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecideBreakGlass() err = %v", err)
			}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("DecideBreakGlass() grant mismatch (-want +got):\n%s", diff)
			}
			if bg.State != approval.BreakGlassOpen || !bg.ReviewDue.Equal(now.Add(24*time.Hour)) {
				t.Errorf("DecideBreakGlass() = %+v, want open and due in 24h", bg)
			}
		})
	}
	if _, _, err := p.DecideBreakGlass(context.Background(), "g1", approval.BreakGlassInput{ID: "bg_1", Taker: orders, Entitlement: "orders-db.read", Reason: "x"}, now); !errors.Is(err, approval.ErrBreakGlassNotAllowed) {
		t.Errorf("DecideBreakGlass(orders-db.read) err = %v, want ErrBreakGlassNotAllowed", err)
	}
}
