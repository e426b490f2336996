package policy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/writ-dev/writ/approval"
)

// fuzzVaultPathRE is what a vault_secret path must look like: segments of
// letters, digits, '_', '.' and '-' separated by single slashes.
var fuzzVaultPathRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

// FuzzParse checks that Parse never panics, that it returns a policy or an
// error but not both, and that every policy it accepts obeys the file rules.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(head + entitlement))
	f.Add([]byte(with("      mode: auto\n", "      mode: auto\n      condition: 'request.path.startsWith(\"/ns/\") && now < timestamp(\"2031-01-01T00:00:00Z\")'\n")))
	f.Add([]byte(with("jwt: {audience: [orders-api]}", "vault_token: {role: r}", "mode: auto", "mode: approvers")))
	f.Add([]byte(with("jwt: {audience: [orders-api]}", "vault_secret: {path: database/creds/orders-ro}")))
	f.Add([]byte(with("jwt: {audience: [orders-api]}", "vault_transit_jwt: {key: writ-jwt, audience: [orders-api]}")))
	f.Add([]byte(approvers(stagesAndWindow + "      reason: {required: true, pattern: '^[A-Z].*$', max_len: 100}\n      ticket: 'CHG-[0-9]+'\n")))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte(breakGlass("      reviewers:", "      block_while_overdue: false\n      reviewers:")))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			t.Skip("bounded: large inputs only slow the fuzzer down")
		}
		p, err := Parse("fuzz.yaml", data)
		if (p == nil) == (err == nil) {
			t.Fatalf("Parse() = %v, %v; want exactly one of them", p, err)
		}
		if err != nil {
			for _, e := range splitErrs(err) {
				if !strings.HasPrefix(e.Error(), "fuzz.yaml") {
					t.Errorf("problem %q does not name the file", e)
				}
			}
			return
		}
		if len(p.Entitlements) == 0 {
			t.Errorf("accepted a policy without entitlements")
		}
		for name, e := range p.Entitlements {
			if e.Name != name || e.MaxTTL <= 0 || e.MaxTTL > MaxTTLLimit || len(e.Requesters) == 0 || e.Recipe.Kind == "" || e.Owner == "" {
				t.Errorf("accepted an invalid entitlement: %+v", e)
			}
			r := e.Recipe
			switch r.Kind {
			case approval.KindJWT:
				if len(r.Audience) == 0 || r.Role != "" || r.Path != "" || r.TransitKey != "" {
					t.Errorf("accepted an invalid jwt recipe: %+v", r)
				}
			case approval.KindVaultToken:
				if !roleRE.MatchString(r.Role) || len(r.Audience) != 0 || r.Path != "" || r.TransitKey != "" {
					t.Errorf("accepted an invalid vault_token recipe: %+v", r)
				}
			case approval.KindVaultSecret:
				// Checked independently of vaultPathProblem (T37).
				if !fuzzVaultPathRE.MatchString(r.Path) || len(r.Path) > MaxVaultPathLen || len(r.Audience) != 0 || r.Role != "" || r.TransitKey != "" {
					t.Errorf("accepted an invalid vault_secret recipe: %+v", r)
				}
				for _, seg := range strings.Split(r.Path, "/") {
					if seg == "." || seg == ".." {
						t.Errorf("accepted vault_secret path %q", r.Path)
					}
				}
			case approval.KindVaultTransitJWT:
				if !transitKeyRE.MatchString(r.TransitKey) || len(r.Audience) == 0 || r.Role != "" || r.Path != "" {
					t.Errorf("accepted an invalid vault_transit_jwt recipe: %+v", r)
				}
			default:
				t.Errorf("accepted recipe kind %q", r.Kind)
			}
			for _, a := range r.Audience {
				if strings.TrimSpace(a) == "" {
					t.Errorf("accepted an empty audience: %+v", r)
				}
			}
			switch e.Mode {
			case approval.ModeAuto:
				if len(e.Stages) != 0 || e.Window != 0 || e.PendingTTL != 0 || e.Reason != (approval.ReasonRule{}) || e.TicketPattern != "" {
					t.Errorf("accepted approver fields with mode auto: %+v", e)
				}
			case approval.ModeApprovers:
				if len(e.Stages) == 0 || e.Window <= 0 || e.Window > WindowLimit || e.PendingTTL <= 0 || e.PendingTTL > PendingTTLLimit || e.Condition != nil {
					t.Errorf("accepted an invalid approvers entitlement: %+v", e)
				}
				for _, s := range e.Stages {
					if len(s.Groups) == 0 || s.Min < 1 || s.Min > MaxStageApprovers {
						t.Errorf("accepted an invalid stage: %+v", s)
					}
				}
			default:
				t.Errorf("accepted approval mode %q", e.Mode)
			}
			if bg := e.BreakGlass; bg != nil {
				if len(bg.Workloads)+len(bg.Groups) == 0 || bg.MaxTTL <= 0 || bg.MaxTTL >= e.MaxTTL ||
					bg.ReviewWithin <= 0 || bg.ReviewWithin > ReviewWithinLimit || len(bg.ReviewerGroups) == 0 || bg.MinReviewers < 1 || bg.MinReviewers > MaxStageApprovers {
					t.Errorf("accepted an invalid break_glass block: %+v", bg)
				}
			}
		}
	})
}
