package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/writ-dev/writ/approval"
)

// MaxTTLLimit is the longest max_ttl a policy may give an entitlement.
const MaxTTLLimit = 24 * time.Hour

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	roleRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
	// transitKeyRE is a Vault transit key name: one path segment, never
	// "." or "..".
	transitKeyRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
	// vaultSegmentRE is one segment of a vault_secret path.
	vaultSegmentRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)
)

// MaxVaultPathLen is the longest vault_secret path a policy may give, in
// bytes.
const MaxVaultPathLen = 256

var (
	entitlementFields = []string{"name", "owner", "purpose", "max_ttl", "requesters", "issuer", "approval", "break_glass"}
	// requiredEntitlementFields are entitlementFields less the optional
	// break_glass.
	requiredEntitlementFields = []string{"name", "owner", "purpose", "max_ttl", "requesters", "issuer", "approval"}
	issuerFields              = []string{string(approval.KindJWT), string(approval.KindVaultToken), string(approval.KindVaultSecret), string(approval.KindVaultTransitJWT)}
	approvalFields            = []string{"mode", "condition", "stages", "window", "pending_ttl", "reason", "ticket"}
)

// modeBreakGlass was once reserved as an approval mode. Break-glass is now
// the entitlement's own break_glass block, independent of the approval
// mode, so "mode: break_glass" gets a message pointing there rather than
// "unknown mode".
const modeBreakGlass approval.Mode = "break_glass"

// knownModes are every approval mode the format defines; supportedModes are
// those this version can decide. A mode that is known but not supported is
// reported with approval.ErrUnsupported.
var (
	knownModes     = []approval.Mode{approval.ModeAuto, approval.ModeApprovers}
	supportedModes = []approval.Mode{approval.ModeAuto, approval.ModeApprovers}
)

// entitlement decodes one entry of the entitlements list. It returns nil if
// the entry has no usable name; nameNode locates the name for duplicate
// reports.
func (d *decoder) entitlement(n *yaml.Node, path, trustDomain string, tdOK bool) (e *approval.Entitlement, nameNode *yaml.Node) {
	fields, ok := d.mapping(n, path, entitlementFields, requiredEntitlementFields)
	if !ok {
		return nil, nil
	}
	e = &approval.Entitlement{}
	nameOK := false
	if f, ok := fields["name"]; ok {
		nameNode = f.val
		if s, ok := d.str(f.val, join(path, "name")); ok {
			if nameRE.MatchString(s) {
				e.Name, nameOK = s, true
			} else {
				d.errorf(f.val, join(path, "name"), "%q is not a valid name (1-63 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit)", s)
			}
		}
	}
	if f, ok := fields["owner"]; ok {
		e.Owner, _ = d.str(f.val, join(path, "owner"))
	}
	if f, ok := fields["purpose"]; ok {
		e.Purpose, _ = d.str(f.val, join(path, "purpose"))
	}
	if f, ok := fields["max_ttl"]; ok {
		e.MaxTTL = d.maxTTL(f.val, join(path, "max_ttl"))
	}
	if f, ok := fields["requesters"]; ok {
		e.Requesters = d.requesters(f.val, join(path, "requesters"), trustDomain, tdOK)
	}
	if f, ok := fields["issuer"]; ok {
		e.Recipe = d.issuer(f.val, join(path, "issuer"))
	}
	if f, ok := fields["approval"]; ok {
		d.approval(f.val, join(path, "approval"), e)
	}
	if f, ok := fields["break_glass"]; ok {
		e.BreakGlass = d.breakGlass(f.val, join(path, "break_glass"), e.MaxTTL, trustDomain, tdOK)
	}
	if !nameOK {
		return nil, nil
	}
	return e, nameNode
}

// maxTTL decodes a duration in (0, MaxTTLLimit].
func (d *decoder) maxTTL(n *yaml.Node, path string) time.Duration {
	return d.duration(n, path, MaxTTLLimit, "24h; ask for shorter credentials and request again")
}

// duration decodes a duration in (0, limit]; limitMsg describes the limit.
func (d *decoder) duration(n *yaml.Node, path string, limit time.Duration, limitMsg string) time.Duration {
	if !d.kind(n, path, yaml.ScalarNode, "a duration such as 15m") {
		return 0
	}
	v, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		d.errorf(n, path, "%q is not a duration (use e.g. 90s, 15m, 2h)", n.Value)
	case v <= 0:
		d.errorf(n, path, "%q must be greater than zero", n.Value)
	case v > limit:
		d.errorf(n, path, "%q is above the limit of %s", n.Value, limitMsg)
	}
	return v
}

// requesters decodes the eligibility rules. When the policy's trust domain
// is itself invalid, patterns are checked against their own trust domain so
// that the one mistake is not reported once per requester.
func (d *decoder) requesters(n *yaml.Node, path, trustDomain string, tdOK bool) []approval.Requester {
	items, _ := d.list(n, path, "at least one requester (a SPIFFE ID or a \"/*\" prefix) is required")
	var out []approval.Requester
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
		td := trustDomain
		if !tdOK {
			td = approval.Principal(strings.TrimSuffix(s, "/*")).TrustDomain()
		}
		r, err := approval.ParseRequester(s, td)
		if err != nil {
			d.errorf(item, p, "%s", trimSentinel(err))
			continue
		}
		out = append(out, r)
	}
	return out
}

// issuerChoices lists the issuer kinds for "set exactly one of" messages.
var issuerChoices = strings.Join(issuerFields[:len(issuerFields)-1], ", ") + " or " + issuerFields[len(issuerFields)-1]

// issuer decodes the recipe: exactly one of jwt, vault_token, vault_secret
// or vault_transit_jwt.
func (d *decoder) issuer(n *yaml.Node, path string) approval.Recipe {
	fields, ok := d.mapping(n, path, issuerFields, nil)
	if !ok {
		return approval.Recipe{}
	}
	switch len(fields) {
	case 0:
		d.errorf(n, path, "set exactly one of %s", issuerChoices)
		return approval.Recipe{}
	case 1:
	default:
		var names []string // in file order
		for i := 0; i < len(n.Content); i += 2 {
			if k := n.Content[i]; fields[k.Value].key == k {
				names = append(names, k.Value)
			}
		}
		d.errorf(n, path, "set only one of %s, not %s and %s", issuerChoices, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
		return approval.Recipe{}
	}
	if f, ok := fields[string(approval.KindJWT)]; ok {
		return d.jwtRecipe(f.val, join(path, string(approval.KindJWT)))
	}
	if f, ok := fields[string(approval.KindVaultToken)]; ok {
		return d.vaultTokenRecipe(f.val, join(path, string(approval.KindVaultToken)))
	}
	if f, ok := fields[string(approval.KindVaultSecret)]; ok {
		return d.vaultSecretRecipe(f.val, join(path, string(approval.KindVaultSecret)))
	}
	f := fields[string(approval.KindVaultTransitJWT)]
	return d.vaultTransitJWTRecipe(f.val, join(path, string(approval.KindVaultTransitJWT)))
}

// jwtRecipe decodes jwt: {audience: [...]}.
func (d *decoder) jwtRecipe(n *yaml.Node, path string) approval.Recipe {
	r := approval.Recipe{Kind: approval.KindJWT}
	fields, ok := d.mapping(n, path, []string{"audience"}, []string{"audience"})
	if !ok {
		return r
	}
	if a, ok := fields["audience"]; ok {
		r.Audience = d.audience(a.val, join(path, "audience"))
	}
	return r
}

// vaultTokenRecipe decodes vault_token: {role: ...}.
func (d *decoder) vaultTokenRecipe(n *yaml.Node, path string) approval.Recipe {
	r := approval.Recipe{Kind: approval.KindVaultToken}
	fields, ok := d.mapping(n, path, []string{"role"}, []string{"role"})
	if !ok {
		return r
	}
	if rf, ok := fields["role"]; ok {
		rp := join(path, "role")
		if s, ok := d.str(rf.val, rp); ok {
			if roleRE.MatchString(s) {
				r.Role = s
			} else {
				d.errorf(rf.val, rp, "%q is not a valid Vault token role name (1-128 of letters, digits, '_' and '-')", s)
			}
		}
	}
	return r
}

// vaultSecretRecipe decodes vault_secret: {path: ...}.
func (d *decoder) vaultSecretRecipe(n *yaml.Node, path string) approval.Recipe {
	r := approval.Recipe{Kind: approval.KindVaultSecret}
	fields, ok := d.mapping(n, path, []string{"path"}, []string{"path"})
	if !ok {
		return r
	}
	if pf, ok := fields["path"]; ok {
		pp := join(path, "path")
		if s, ok := d.str(pf.val, pp); ok {
			if msg := vaultPathProblem(s); msg != "" {
				d.errorf(pf.val, pp, "%s", msg)
			} else {
				r.Path = s
			}
		}
	}
	return r
}

// vaultTransitJWTRecipe decodes vault_transit_jwt: {key: ..., audience: [...]}.
func (d *decoder) vaultTransitJWTRecipe(n *yaml.Node, path string) approval.Recipe {
	r := approval.Recipe{Kind: approval.KindVaultTransitJWT}
	fields, ok := d.mapping(n, path, []string{"key", "audience"}, []string{"key", "audience"})
	if !ok {
		return r
	}
	if kf, ok := fields["key"]; ok {
		kp := join(path, "key")
		if s, ok := d.str(kf.val, kp); ok {
			if transitKeyRE.MatchString(s) {
				r.TransitKey = s
			} else {
				d.errorf(kf.val, kp, "%q is not a valid Vault transit key name (1-128 of letters, digits, '_' and '-')", s)
			}
		}
	}
	if a, ok := fields["audience"]; ok {
		r.Audience = d.audience(a.val, join(path, "audience"))
	}
	return r
}

// audience decodes a JWT audience: a list of one or more non-empty strings.
func (d *decoder) audience(n *yaml.Node, path string) []string {
	items, _ := d.list(n, path, "at least one audience is required")
	var out []string
	for i, item := range items {
		if s, ok := d.str(item, index(path, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

// vaultPathProblem returns why p is not an acceptable vault_secret path, or
// "" if it is one: 1 to MaxVaultPathLen bytes of segments made of letters,
// digits, '_', '-' and '.', separated by single '/', with no leading or
// trailing '/' and no "." or ".." segment. Such a path cannot climb out of
// its mount or smuggle a query, an encoded character or a NUL into the
// request to Vault (reliability case T37).
func vaultPathProblem(p string) string {
	if len(p) > MaxVaultPathLen {
		return fmt.Sprintf("Vault path is %d bytes long; the limit is %d", len(p), MaxVaultPathLen)
	}
	segs := strings.Split(p, "/")
	for _, seg := range segs {
		if !vaultSegmentRE.MatchString(seg) && seg != "" {
			return fmt.Sprintf("%q is not a valid Vault path (segments of letters, digits, '_', '-' and '.', separated by '/')", p)
		}
	}
	for _, seg := range segs {
		switch seg {
		case "":
			return fmt.Sprintf("%q is not a valid Vault path: write it without a leading or trailing '/' and without empty segments (\"//\")", p)
		case ".", "..":
			return fmt.Sprintf("%q is not a valid Vault path: \".\" and \"..\" segments are not allowed", p)
		}
	}
	return ""
}

// Kinds returns the distinct credential kinds that p's entitlements use,
// sorted, so that a daemon builds only the issuers its policy needs. It
// returns nil for a nil policy or one without entitlements.
func Kinds(p *approval.Policy) []approval.CredentialKind {
	if p == nil {
		return nil
	}
	var kinds []approval.CredentialKind
	for _, e := range p.Entitlements {
		if e != nil && !slices.Contains(kinds, e.Recipe.Kind) {
			kinds = append(kinds, e.Recipe.Kind)
		}
	}
	slices.Sort(kinds)
	return kinds
}
