package policy

import (
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/writ-dev/writ/approval"
)

// ReviewWithinLimit is the longest a policy may let a break-glass review
// wait.
const ReviewWithinLimit = 7 * 24 * time.Hour

var (
	breakGlassFields         = []string{"allowed", "max_ttl", "review_within", "reviewers", "block_while_overdue"}
	breakGlassRequiredFields = []string{"allowed", "max_ttl", "review_within", "reviewers"}
	reviewersFields          = []string{"groups", "min"}
)

// breakGlass decodes an entitlement's break_glass block. entMaxTTL is the
// entitlement's max_ttl (zero or out of range if it is missing or invalid,
// already reported): a break-glass credential must live shorter than a
// normal one.
func (d *decoder) breakGlass(n *yaml.Node, path string, entMaxTTL time.Duration, trustDomain string, tdOK bool) *approval.BreakGlassRule {
	fields, ok := d.mapping(n, path, breakGlassFields, breakGlassRequiredFields)
	if !ok {
		return nil
	}
	r := &approval.BreakGlassRule{BlockWhileOverdue: true}
	if f, ok := fields["allowed"]; ok {
		r.Workloads, r.Groups = d.breakGlassAllowed(f.val, join(path, "allowed"), trustDomain, tdOK)
	}
	if f, ok := fields["max_ttl"]; ok {
		p := join(path, "max_ttl")
		r.MaxTTL = d.maxTTL(f.val, p)
		if r.MaxTTL > 0 && r.MaxTTL <= MaxTTLLimit && entMaxTTL > 0 && entMaxTTL <= MaxTTLLimit && r.MaxTTL >= entMaxTTL {
			d.errorf(f.val, p, "%q must be shorter than the entitlement's max_ttl (%s): break-glass credentials live shorter than normal ones", f.val.Value, entMaxTTL)
		}
	}
	if f, ok := fields["review_within"]; ok {
		r.ReviewWithin = d.duration(f.val, join(path, "review_within"), ReviewWithinLimit, "168h (7 days); every use must be reviewed within a week")
	}
	if f, ok := fields["reviewers"]; ok {
		p := join(path, "reviewers")
		if rf, ok := d.mapping(f.val, p, reviewersFields, reviewersFields); ok {
			if g, ok := rf["groups"]; ok {
				r.ReviewerGroups = d.groupList(g.val, join(p, "groups"), "at least one reviewer group is required")
			}
			if m, ok := rf["min"]; ok {
				r.MinReviewers = d.intIn(m.val, join(p, "min"), 1, MaxStageApprovers, "reviewers")
			}
		}
	}
	if f, ok := fields["block_while_overdue"]; ok {
		if v, ok := d.scalar(f.val, join(path, "block_while_overdue"), "!!bool", "true or false"); ok {
			r.BlockWhileOverdue = v == "true"
		}
	}
	return r
}

// breakGlassAllowed decodes who may break glass: SPIFFE ID patterns
// (exactly, or a "/*" prefix, in the policy's trust domain) for workloads
// and group names for people. As in requesters, patterns are checked
// against their own trust domain when the policy's is invalid.
func (d *decoder) breakGlassAllowed(n *yaml.Node, path, trustDomain string, tdOK bool) (workloads []approval.Requester, groups []string) {
	items, _ := d.list(n, path, `at least one workload pattern (spiffe://…, or a "/*" prefix) or group name is required`)
	seen := map[string]int{}
	for i, item := range items {
		p := index(path, i)
		s, ok := d.str(item, p)
		if !ok {
			continue
		}
		if first, dup := seen[s]; dup {
			d.errorf(item, p, "%q is listed twice (also %s)", s, index(path, first))
			continue
		}
		seen[s] = i
		switch {
		case strings.HasPrefix(s, "spiffe://"):
			td := trustDomain
			if !tdOK {
				td = approval.Principal(strings.TrimSuffix(s, "/*")).TrustDomain()
			}
			w, err := approval.ParseRequester(s, td)
			if err != nil {
				d.errorf(item, p, "%s", trimSentinel(err))
				continue
			}
			workloads = append(workloads, w)
		case strings.Contains(s, "://") || strings.Contains(s, "*"):
			d.errorf(item, p, "%q is neither a SPIFFE ID pattern (spiffe://%s/…) nor a group name (groups have no \"://\" or '*')", s, trustDomain)
		default:
			groups = append(groups, s)
		}
	}
	return workloads, groups
}
