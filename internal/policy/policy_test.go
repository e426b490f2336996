package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/writ-dev/writ/approval"
)

// head is the first three lines of every test document; the entitlement
// below it starts on line 4.
const head = "version: 1\ntrust_domain: writ.dev\nentitlements:\n"

// entitlement is a valid entitlement occupying lines 4 to 13.
const entitlement = `  - name: demo
    owner: platform-team
    purpose: demo credential
    max_ttl: 15m
    requesters:
      - spiffe://writ.dev/demo
    issuer:
      jwt: {audience: [orders-api]}
    approval:
      mode: auto
`

// with returns the valid document with each old line replaced by new.
func with(oldnew ...string) string {
	doc := head + entitlement
	for i := 0; i+1 < len(oldnew); i += 2 {
		if !strings.Contains(doc, oldnew[i]) {
			panic("test document has no " + oldnew[i])
		}
		doc = strings.Replace(doc, oldnew[i], oldnew[i+1], 1)
	}
	return doc
}

// approvers returns the valid document with mode approvers and the given
// approval fields, which start on line 14.
func approvers(fields string) string {
	return with("      mode: auto\n", "      mode: approvers\n"+fields)
}

// stagesAndWindow are the approval fields every approvers entitlement needs,
// on lines 14 to 16.
const stagesAndWindow = "      stages:\n        - {groups: [dba], min: 2}\n      window: 8h\n"

// wantErr is one expected problem: the exact "file:line: path: " prefix and
// a distinctive part of the message.
type wantErr struct {
	prefix, msg string
}

// splitErrs returns the problems joined into err.
func splitErrs(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func checkErrs(t *testing.T, err error, want []wantErr) {
	t.Helper()
	if err == nil {
		t.Fatalf("Parse() err = nil, want %d problems", len(want))
	}
	got := splitErrs(err)
	if len(got) != len(want) {
		t.Fatalf("Parse() returned %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		msg := got[i].Error()
		if !strings.HasPrefix(msg, w.prefix) {
			t.Errorf("problem %d = %q, want prefix %q", i, msg, w.prefix)
		}
		if !strings.Contains(msg, w.msg) {
			t.Errorf("problem %d = %q, want it to contain %q", i, msg, w.msg)
		}
		var pe *Error
		if !errors.As(got[i], &pe) {
			t.Errorf("problem %d (%v) is not a *policy.Error", i, got[i])
		}
	}
}

// TestParse_Errors has one case per message Parse can produce.
func TestParse_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		want []wantErr
	}{
		// Whole file.
		{"file larger than 1 MiB", head + strings.Repeat("#", MaxFileSize),
			[]wantErr{{"policy.yaml: ", "policy file is larger than 1 MiB"}}},
		{"empty file", "",
			[]wantErr{{"policy.yaml: ", "policy file is empty; it needs version, trust_domain and entitlements"}}},
		{"only comments", "# nothing here\n",
			[]wantErr{{"policy.yaml: ", "policy file is empty"}}},
		{"yaml syntax error", "version: 1\ntrust_domain: [writ.dev\n",
			[]wantErr{{"policy.yaml:1: ", "invalid YAML: did not find expected ',' or ']'"}}},
		{"yaml syntax error without a line", "version: 1\n\x01\n",
			[]wantErr{{"policy.yaml: ", "invalid YAML: control characters are not allowed"}}},
		{"yaml syntax error with line", "version: 1\n  trust_domain: x\n",
			[]wantErr{{"policy.yaml:2: ", "invalid YAML: mapping values are not allowed in this context"}}},
		{"yaml syntax error in second document", head + entitlement + "---\n[\n",
			[]wantErr{{"policy.yaml:15: ", "invalid YAML: did not find expected node content"}}},
		{"two documents after a leading separator", "---\n" + head + entitlement + "---\nversion: 1\n",
			[]wantErr{{"policy.yaml:15: ", `policy file holds more than one YAML document`}}},
		{"two documents", head + entitlement + "---\nversion: 1\n",
			[]wantErr{{"policy.yaml:14: ", `policy file holds more than one YAML document; remove the "---" separator`}}},
		{"top level is a list", "- version: 1\n",
			[]wantErr{{"policy.yaml:1: ", "must be a mapping, got a list"}}},

		// Keys.
		{"unknown top-level key", "versoin: 1\n" + with("version: 1\n", ""),
			[]wantErr{
				{"policy.yaml:1: versoin: ", `unknown field; did you mean "version"? (allowed here: version, trust_domain, entitlements)`},
				{"policy.yaml:1: ", `missing required field "version"`},
			}},
		{"unknown key with a suggestion", with("    owner: platform-team", "    ownr: platform-team"),
			[]wantErr{
				{"policy.yaml:4: entitlements[0]: ", `missing required field "owner"`},
				{"policy.yaml:5: entitlements[0].ownr: ", `unknown field; did you mean "owner"?`},
			}},
		{"unknown key without a suggestion", with("    approval:\n", "    colour: blue\n    approval:\n"),
			[]wantErr{{"policy.yaml:12: entitlements[0].colour: ", "unknown field (allowed here: name, owner, purpose, max_ttl, requesters, issuer, approval, break_glass)"}}},
		{"unknown key deep inside", with("jwt: {audience: [orders-api]}", "jwt: {audience: [orders-api], subject: x}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.jwt.subject: ", "unknown field (allowed here: audience)"}}},
		{"duplicate key", with("    owner: platform-team\n", "    owner: platform-team\n    owner: other-team\n"),
			[]wantErr{{"policy.yaml:6: entitlements[0].owner: ", "duplicate key (first set on line 5)"}}},
		{"duplicate top-level key", head + entitlement + "version: 1\n",
			[]wantErr{{"policy.yaml:14: version: ", "duplicate key (first set on line 1)"}}},
		{"non-string key", with("    owner: platform-team\n", "    owner: platform-team\n    1: one\n"),
			[]wantErr{{"policy.yaml:6: entitlements[0]: ", "keys must be plain field names, got the number 1"}}},
		{"merge key", "base: &b {owner: x}\n" + with("    owner: platform-team\n", "    <<: *b\n"),
			[]wantErr{
				{"policy.yaml:1: base: ", "unknown field"},
				{"policy.yaml:5: entitlements[0]: ", `missing required field "owner"`},
				{"policy.yaml:6: entitlements[0]: ", "keys must be plain field names, got a merge key (<<)"},
			}},
		{"alias as a key", with("trust_domain: writ.dev", "trust_domain: &td writ.dev", "    owner: platform-team\n", "    owner: platform-team\n    *td : x\n"),
			[]wantErr{{"policy.yaml:6: entitlements[0]: ", "keys must be plain field names, got an alias"}}},
		{"alias", with("trust_domain: writ.dev", "trust_domain: &td writ.dev", "    owner: platform-team", "    owner: *td"),
			[]wantErr{{"policy.yaml:5: entitlements[0].owner: ", "YAML aliases (*name) are not allowed in a policy file; write the value out"}}},

		// Required fields and types.
		{"missing top-level fields", "version: 1\n",
			[]wantErr{
				{"policy.yaml:1: ", `missing required field "trust_domain"`},
				{"policy.yaml:1: ", `missing required field "entitlements"`},
			}},
		{"missing entitlement field", with("    purpose: demo credential\n", ""),
			[]wantErr{{"policy.yaml:4: entitlements[0]: ", `missing required field "purpose"`}}},
		{"missing approval mode", with("      mode: auto\n", "      condition: 'true'\n"),
			[]wantErr{{"policy.yaml:13: entitlements[0].approval: ", `missing required field "mode"`}}},
		{"missing vault role", with("jwt: {audience: [orders-api]}", "vault_token: {}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_token: ", `missing required field "role"`}}},
		{"missing jwt audience", with("jwt: {audience: [orders-api]}", "jwt: {}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.jwt: ", `missing required field "audience"`}}},
		{"string where a mapping belongs", with("    issuer:\n      jwt: {audience: [orders-api]}\n", "    issuer: jwt\n"),
			[]wantErr{{"policy.yaml:10: entitlements[0].issuer: ", `must be a mapping, got the string "jwt"`}}},
		{"entitlement is not a mapping", head + "  - demo\n",
			[]wantErr{{"policy.yaml:4: entitlements[0]: ", `must be a mapping, got the string "demo"`}}},
		{"mapping where a list belongs", with("    requesters:\n      - spiffe://writ.dev/demo\n", "    requesters: {a: b}\n"),
			[]wantErr{{"policy.yaml:8: entitlements[0].requesters: ", "must be a list, got a mapping"}}},
		{"string where a list belongs", with("{audience: [orders-api]}", "{audience: orders-api}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.jwt.audience: ", `must be a list, got the string "orders-api"`}}},
		{"number where a string belongs", with("owner: platform-team", "owner: 42"),
			[]wantErr{{"policy.yaml:5: entitlements[0].owner: ", "must be a string, got the number 42"}}},
		{"boolean where a string belongs", with("purpose: demo credential", "purpose: true"),
			[]wantErr{{"policy.yaml:6: entitlements[0].purpose: ", "must be a string, got the boolean true"}}},
		{"null where a string belongs", with("owner: platform-team", "owner:"),
			[]wantErr{{"policy.yaml:5: entitlements[0].owner: ", "must be a string, got no value"}}},
		{"list where a string belongs", with("      - spiffe://writ.dev/demo", "      - [spiffe://writ.dev/demo]"),
			[]wantErr{{"policy.yaml:9: entitlements[0].requesters[0]: ", "must be a string, got a list"}}},
		{"timestamp where a string belongs", with("owner: platform-team", "owner: 2030-01-01"),
			[]wantErr{{"policy.yaml:5: entitlements[0].owner: ", "must be a string, got a !!timestamp value"}}},
		{"empty string", with("owner: platform-team", `owner: "  "`),
			[]wantErr{{"policy.yaml:5: entitlements[0].owner: ", "must not be empty"}}},
		{"empty audience", with("[orders-api]", `[orders-api, ""]`),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.jwt.audience[1]: ", "must not be empty"}}},

		// version and trust_domain.
		{"version 2", with("version: 1", "version: 2"),
			[]wantErr{{"policy.yaml:1: version: ", "2 is not supported by this version of writd (supported: 1)"}}},
		{"version as a string", with("version: 1", `version: "1"`),
			[]wantErr{{"policy.yaml:1: version: ", `must be the number 1, got the string "1"`}}},
		{"trust domain as a URI", with("trust_domain: writ.dev", "trust_domain: spiffe://writ.dev"),
			[]wantErr{{"policy.yaml:2: trust_domain: ", `"spiffe://writ.dev" is a URI; write the bare trust domain, such as writ.dev`}}},
		{"trust domain with capitals", with("trust_domain: writ.dev", "trust_domain: Writ.Dev"),
			[]wantErr{{"policy.yaml:2: trust_domain: ", `"Writ.Dev" is not a valid trust domain (lowercase letters, digits, '.', '-' and '_' only)`}}},

		// Entitlements.
		{"no entitlements", "version: 1\ntrust_domain: writ.dev\nentitlements: []\n",
			[]wantErr{{"policy.yaml:3: entitlements: ", "at least one entitlement is required"}}},
		{"invalid name", with("name: demo", "name: Demo"),
			[]wantErr{{"policy.yaml:4: entitlements[0].name: ", `"Demo" is not a valid name (1-63 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit)`}}},
		{"name too long", with("name: demo", "name: "+strings.Repeat("a", 64)),
			[]wantErr{{"policy.yaml:4: entitlements[0].name: ", "is not a valid name"}}},
		{"duplicate name", head + entitlement + entitlement,
			[]wantErr{{"policy.yaml:14: entitlements[1].name: ", `"demo" is already defined on line 4; entitlement names must be unique`}}},
		{"max_ttl not a duration", with("max_ttl: 15m", "max_ttl: 15x"),
			[]wantErr{{"policy.yaml:7: entitlements[0].max_ttl: ", `"15x" is not a duration (use e.g. 90s, 15m, 2h)`}}},
		{"max_ttl without a unit", with("max_ttl: 15m", "max_ttl: 900"),
			[]wantErr{{"policy.yaml:7: entitlements[0].max_ttl: ", `"900" is not a duration (use e.g. 90s, 15m, 2h)`}}},
		{"max_ttl is a list", with("max_ttl: 15m", "max_ttl: [15m]"),
			[]wantErr{{"policy.yaml:7: entitlements[0].max_ttl: ", "must be a duration such as 15m, got a list"}}},
		{"max_ttl zero", with("max_ttl: 15m", "max_ttl: 0s"),
			[]wantErr{{"policy.yaml:7: entitlements[0].max_ttl: ", `"0s" must be greater than zero`}}},
		{"max_ttl negative", with("max_ttl: 15m", "max_ttl: -5m"),
			[]wantErr{{"policy.yaml:7: entitlements[0].max_ttl: ", `"-5m" must be greater than zero`}}},
		{"max_ttl above 24h", with("max_ttl: 15m", "max_ttl: 25h"),
			[]wantErr{{"policy.yaml:7: entitlements[0].max_ttl: ", `"25h" is above the limit of 24h`}}},

		// Requesters.
		{"no requesters", with("    requesters:\n      - spiffe://writ.dev/demo\n", "    requesters: []\n"),
			[]wantErr{{"policy.yaml:8: entitlements[0].requesters: ", `at least one requester (a SPIFFE ID or a "/*" prefix) is required`}}},
		{"requester listed twice", with("      - spiffe://writ.dev/demo\n", "      - spiffe://writ.dev/demo\n      - spiffe://writ.dev/demo\n"),
			[]wantErr{{"policy.yaml:10: entitlements[0].requesters[1]: ", `"spiffe://writ.dev/demo" is listed twice (also entitlements[0].requesters[0])`}}},
		{"requester in another trust domain", with("spiffe://writ.dev/demo", "spiffe://evil.dev/demo"),
			[]wantErr{{"policy.yaml:9: entitlements[0].requesters[0]: ", `pattern "spiffe://evil.dev/demo": trust domain "evil.dev" is not the policy's trust domain "writ.dev"`}}},
		{"requester wildcard in the middle", with("spiffe://writ.dev/demo", "spiffe://writ.dev/*/api"),
			[]wantErr{{"policy.yaml:9: entitlements[0].requesters[0]: ", `'*' is allowed only as a final "/*" segment`}}},
		{"requester not a SPIFFE ID", with("spiffe://writ.dev/demo", "https://writ.dev/demo"),
			[]wantErr{{"policy.yaml:9: entitlements[0].requesters[0]: ", "is not a spiffe:// URI"}}},
		{"requester without a path", with("spiffe://writ.dev/demo", "spiffe://writ.dev"),
			[]wantErr{{"policy.yaml:9: entitlements[0].requesters[0]: ", "needs a path"}}},
		{"requesters checked despite a bad trust domain", with("trust_domain: writ.dev", "trust_domain: Writ", "spiffe://writ.dev/demo", "spiffe://writ.dev/a/../b"),
			[]wantErr{
				{"policy.yaml:2: trust_domain: ", "is not a valid trust domain"},
				{"policy.yaml:9: entitlements[0].requesters[0]: ", `path segment ".." is not allowed`},
			}},

		// Issuer.
		{"no issuer kind", with("      jwt: {audience: [orders-api]}\n", "      {}\n"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer: ", "set exactly one of jwt, vault_token, vault_secret or vault_transit_jwt"}}},
		{"two issuer kinds", with("      jwt: {audience: [orders-api]}\n", "      jwt: {audience: [orders-api]}\n      vault_token: {role: r}\n"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer: ", "set only one of jwt, vault_token, vault_secret or vault_transit_jwt, not jwt and vault_token"}}},
		{"three issuer kinds, named in file order", with("      jwt: {audience: [orders-api]}\n", "      vault_transit_jwt: {key: k, audience: [a]}\n      vault_secret: {path: a/b}\n      jwt: {audience: [orders-api]}\n"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer: ", "set only one of jwt, vault_token, vault_secret or vault_transit_jwt, not vault_transit_jwt, vault_secret and jwt"}}},
		{"unknown issuer kind", with("jwt: {audience: [orders-api]}", "vault_secrets: {path: a/b}"),
			[]wantErr{
				{"policy.yaml:11: entitlements[0].issuer.vault_secrets: ", `unknown field; did you mean "vault_secret"? (allowed here: jwt, vault_token, vault_secret, vault_transit_jwt)`},
				{"policy.yaml:11: entitlements[0].issuer: ", "set exactly one of"},
			}},
		{"no audience", with("[orders-api]", "[]"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.jwt.audience: ", "at least one audience is required"}}},
		{"vault role with a slash", with("jwt: {audience: [orders-api]}", "vault_token: {role: a/b}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_token.role: ", `"a/b" is not a valid Vault token role name (1-128 of letters, digits, '_' and '-')`}}},
		{"vault role with dots", with("jwt: {audience: [orders-api]}", "vault_token: {role: ..}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_token.role: ", `".." is not a valid Vault token role name`}}},
		{"vault_secret without a path", with("jwt: {audience: [orders-api]}", "vault_secret: {}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret: ", `missing required field "path"`}}},
		{"vault_secret with an unknown field", with("jwt: {audience: [orders-api]}", "vault_secret: {path: a/b, role: r}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.role: ", "unknown field (allowed here: path)"}}},
		{"vault_secret is not a mapping", with("jwt: {audience: [orders-api]}", "vault_secret: database/creds/x"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret: ", `must be a mapping, got the string "database/creds/x"`}}},
		{"vault_secret path is empty", with("jwt: {audience: [orders-api]}", `vault_secret: {path: ""}`),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", "must not be empty"}}},
		{"vault_secret path with a '..' segment", with("jwt: {audience: [orders-api]}", "vault_secret: {path: database/creds/../../sys/raw}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database/creds/../../sys/raw" is not a valid Vault path: "." and ".." segments are not allowed`}}},
		{"vault_secret path with a '.' segment", with("jwt: {audience: [orders-api]}", "vault_secret: {path: database/./creds/x}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database/./creds/x" is not a valid Vault path: "." and ".." segments are not allowed`}}},
		{"vault_secret path that is only '..'", with("jwt: {audience: [orders-api]}", "vault_secret: {path: ..}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `".." is not a valid Vault path: "." and ".." segments are not allowed`}}},
		{"vault_secret path with a leading slash", with("jwt: {audience: [orders-api]}", "vault_secret: {path: /database/creds/x}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"/database/creds/x" is not a valid Vault path: write it without a leading or trailing '/' and without empty segments ("//")`}}},
		{"vault_secret path with a trailing slash", with("jwt: {audience: [orders-api]}", "vault_secret: {path: database/creds/x/}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database/creds/x/" is not a valid Vault path: write it without a leading or trailing '/'`}}},
		{"vault_secret path with an empty segment", with("jwt: {audience: [orders-api]}", "vault_secret: {path: database//creds/x}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database//creds/x" is not a valid Vault path: write it without a leading or trailing '/' and without empty segments ("//")`}}},
		{"vault_secret path with a query", with("jwt: {audience: [orders-api]}", "vault_secret: {path: 'database/creds/x?list=true'}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database/creds/x?list=true" is not a valid Vault path (segments of letters, digits, '_', '-' and '.', separated by '/')`}}},
		{"vault_secret path with an encoded slash", with("jwt: {audience: [orders-api]}", "vault_secret: {path: database/creds/%2e%2e}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database/creds/%2e%2e" is not a valid Vault path (segments of`}}},
		{"vault_secret path with a NUL", with("jwt: {audience: [orders-api]}", `vault_secret: {path: "database/creds/x\0"}`),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database/creds/x\x00" is not a valid Vault path (segments of`}}},
		{"vault_secret path with a space", with("jwt: {audience: [orders-api]}", `vault_secret: {path: "database/creds/orders ro"}`),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database/creds/orders ro" is not a valid Vault path (segments of`}}},
		{"vault_secret path with a backslash", with("jwt: {audience: [orders-api]}", `vault_secret: {path: 'database\creds'}`),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database\\creds" is not a valid Vault path (segments of`}}},
		{"vault_secret path with a non-ASCII letter", with("jwt: {audience: [orders-api]}", "vault_secret: {path: database/creds/ördres}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", `"database/creds/ördres" is not a valid Vault path (segments of`}}},
		{"vault_secret path longer than 256 bytes", with("jwt: {audience: [orders-api]}", "vault_secret: {path: database/creds/"+strings.Repeat("x", 242)+"}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", "Vault path is 257 bytes long; the limit is 256"}}},
		{"vault_secret path is a number", with("jwt: {audience: [orders-api]}", "vault_secret: {path: 42}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_secret.path: ", "must be a string, got the number 42"}}},
		{"vault_transit_jwt without key and audience", with("jwt: {audience: [orders-api]}", "vault_transit_jwt: {}"),
			[]wantErr{
				{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt: ", `missing required field "key"`},
				{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt: ", `missing required field "audience"`},
			}},
		{"vault_transit_jwt with a misspelt field", with("jwt: {audience: [orders-api]}", "vault_transit_jwt: {keys: k, audience: [a]}"),
			[]wantErr{
				{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt.keys: ", `unknown field; did you mean "key"? (allowed here: key, audience)`},
				{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt: ", `missing required field "key"`},
			}},
		{"vault_transit_jwt key with a slash", with("jwt: {audience: [orders-api]}", "vault_transit_jwt: {key: transit/keys/k, audience: [a]}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt.key: ", `"transit/keys/k" is not a valid Vault transit key name (1-128 of letters, digits, '_' and '-')`}}},
		{"vault_transit_jwt key '..'", with("jwt: {audience: [orders-api]}", "vault_transit_jwt: {key: .., audience: [a]}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt.key: ", `".." is not a valid Vault transit key name`}}},
		{"vault_transit_jwt key too long", with("jwt: {audience: [orders-api]}", "vault_transit_jwt: {key: "+strings.Repeat("k", 129)+", audience: [a]}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt.key: ", "is not a valid Vault transit key name"}}},
		{"vault_transit_jwt key is empty", with("jwt: {audience: [orders-api]}", `vault_transit_jwt: {key: "", audience: [a]}`),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt.key: ", "must not be empty"}}},
		{"vault_transit_jwt without an audience", with("jwt: {audience: [orders-api]}", "vault_transit_jwt: {key: k, audience: []}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt.audience: ", "at least one audience is required"}}},
		{"vault_transit_jwt audience is a string", with("jwt: {audience: [orders-api]}", "vault_transit_jwt: {key: k, audience: orders-api}"),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt.audience: ", `must be a list, got the string "orders-api"`}}},
		{"vault_transit_jwt empty audience", with("jwt: {audience: [orders-api]}", `vault_transit_jwt: {key: k, audience: [a, " "]}`),
			[]wantErr{{"policy.yaml:11: entitlements[0].issuer.vault_transit_jwt.audience[1]: ", "must not be empty"}}},

		// Approval.
		{"mode break_glass points to the break_glass block", with("mode: auto", "mode: break_glass"),
			[]wantErr{{"policy.yaml:13: entitlements[0].approval.mode: ", `"break_glass" is not an approval mode: break-glass is set in the entitlement's own break_glass: block`}}},
		{"unknown mode", with("mode: auto", "mode: manual"),
			[]wantErr{{"policy.yaml:13: entitlements[0].approval.mode: ", `"manual" is not an approval mode (valid: auto, approvers)`}}},
		{"condition without mode auto", approvers(stagesAndWindow + "      condition: 'true'\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.condition: ", "is allowed only with mode auto"}}},
		{"condition is still compiled under mode break_glass", with("      mode: auto\n", "      mode: break_glass\n      condition: 'foo'\n"),
			[]wantErr{
				{"policy.yaml:13: entitlements[0].approval.mode: ", "is not an approval mode: break-glass is set in"},
				{"policy.yaml:14: entitlements[0].approval.condition: ", "does not compile"},
			}},
		{"condition too long", with("      mode: auto\n", "      mode: auto\n      condition: '"+strings.Repeat("true && ", 600)+"true'\n"),
			[]wantErr{{"policy.yaml:14: entitlements[0].approval.condition: ", "is 4804 bytes long; the limit is 4096"}}},
		{"condition does not compile", with("      mode: auto\n", "      mode: auto\n      condition: 'request.ttl <= duration(\"10m\") && request.spiffe <= 1'\n"),
			[]wantErr{{"policy.yaml:14: entitlements[0].approval.condition: ", "does not compile: undefined field 'spiffe' (column 42)"}}},
		{"multi-line condition does not compile", with("      mode: auto\n", "      mode: auto\n      condition: |\n        request.ttl <= duration(\"10m\") &&\n        foo\n"),
			[]wantErr{{"policy.yaml:14: entitlements[0].approval.condition: ", "does not compile: undeclared reference to 'foo' (expression line 2, column 1)"}}},
		{"condition over the recursion limit", with("      mode: auto\n", "      mode: auto\n      condition: '"+strings.Repeat("(", 300)+"true"+strings.Repeat(")", 300)+"'\n"),
			[]wantErr{{"policy.yaml:14: entitlements[0].approval.condition: ", "does not compile: expression recursion limit exceeded: 250"}}},
		{"condition with a syntax error", with("      mode: auto\n", "      mode: auto\n      condition: 'request.ttl <='\n"),
			[]wantErr{{"policy.yaml:14: entitlements[0].approval.condition: ", "does not compile: "}}},
		{"condition is not a bool", with("      mode: auto\n", "      mode: auto\n      condition: 'request.ttl'\n"),
			[]wantErr{{"policy.yaml:14: entitlements[0].approval.condition: ", "must evaluate to a bool, but its type is google.protobuf.Duration"}}},
		{"condition is dyn", with("      mode: auto\n", "      mode: auto\n      condition: 'dyn(true)'\n"),
			[]wantErr{{"policy.yaml:14: entitlements[0].approval.condition: ", "must evaluate to a bool, but its type is dyn"}}},

		// Approvers.
		{"approvers without stages and window", with("mode: auto", "mode: approvers"),
			[]wantErr{
				{"policy.yaml:13: entitlements[0].approval: ", `missing required field "stages": mode approvers needs at least one stage`},
				{"policy.yaml:13: entitlements[0].approval: ", `missing required field "window": how long an approval lasts`},
			}},
		{"no stages", approvers("      stages: []\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:14: entitlements[0].approval.stages: ", "at least one stage is required"}}},
		{"stages as a mapping", approvers("      stages: {groups: [dba], min: 1}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:14: entitlements[0].approval.stages: ", "must be a list, got a mapping"}}},
		{"stage without groups or min", approvers("      stages:\n        - {}\n      window: 8h\n"),
			[]wantErr{
				{"policy.yaml:15: entitlements[0].approval.stages[0]: ", `missing required field "groups"`},
				{"policy.yaml:15: entitlements[0].approval.stages[0]: ", `missing required field "min"`},
			}},
		{"unknown stage field", approvers("      stages:\n        - {groups: [dba], min: 1, max: 2}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].max: ", "unknown field; did you mean \"min\"? (allowed here: groups, min)"}}},
		{"min zero", approvers("      stages:\n        - {groups: [dba], min: 0}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].min: ", "0 is out of range; use 1 to 10 approvers"}}},
		{"min above ten", approvers("      stages:\n        - {groups: [dba], min: 11}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].min: ", "11 is out of range; use 1 to 10 approvers"}}},
		{"min beyond an int", approvers("      stages:\n        - {groups: [dba], min: 99999999999999999999}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].min: ", "must be a whole number from 1 to 10, got the number 99999999999999999999"}}},
		{"min in hexadecimal is still checked", approvers("      stages:\n        - {groups: [dba], min: 0x10}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].min: ", "0x10 is out of range; use 1 to 10 approvers"}}},
		{"min as a word", approvers("      stages:\n        - {groups: [dba], min: two}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].min: ", `must be a whole number from 1 to 10, got the string "two"`}}},
		{"min as a fraction", approvers("      stages:\n        - {groups: [dba], min: 1.5}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].min: ", "must be a whole number from 1 to 10, got the number 1.5"}}},
		{"no groups", approvers("      stages:\n        - {groups: [], min: 1}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].groups: ", "at least one approver group is required"}}},
		{"empty group", approvers("      stages:\n        - {groups: [dba, ''], min: 1}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].groups[1]: ", "must not be empty"}}},
		{"group listed twice", approvers("      stages:\n        - {groups: [dba, sre, dba], min: 1}\n      window: 8h\n"),
			[]wantErr{{"policy.yaml:15: entitlements[0].approval.stages[0].groups[2]: ", `"dba" is listed twice (also entitlements[0].approval.stages[0].groups[0])`}}},
		{"window not a duration", approvers("      stages:\n        - {groups: [dba], min: 1}\n      window: 8 hours\n"),
			[]wantErr{{"policy.yaml:16: entitlements[0].approval.window: ", `"8 hours" is not a duration (use e.g. 90s, 15m, 2h)`}}},
		{"window zero", approvers("      stages:\n        - {groups: [dba], min: 1}\n      window: 0s\n"),
			[]wantErr{{"policy.yaml:16: entitlements[0].approval.window: ", `"0s" must be greater than zero`}}},
		{"window above seven days", approvers("      stages:\n        - {groups: [dba], min: 1}\n      window: 169h\n"),
			[]wantErr{{"policy.yaml:16: entitlements[0].approval.window: ", `"169h" is above the limit of 168h (7 days)`}}},
		{"pending_ttl negative", approvers(stagesAndWindow + "      pending_ttl: -1h\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.pending_ttl: ", `"-1h" must be greater than zero`}}},
		{"pending_ttl above seven days", approvers(stagesAndWindow + "      pending_ttl: 200h\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.pending_ttl: ", `"200h" is above the limit of 168h (7 days)`}}},
		{"reason as a string", approvers(stagesAndWindow + "      reason: required\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.reason: ", `must be a mapping, got the string "required"`}}},
		{"unknown reason field", approvers(stagesAndWindow + "      reason: {min_len: 10}\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.reason.min_len: ", `unknown field; did you mean "max_len"? (allowed here: required, pattern, max_len)`}}},
		{"reason required not a boolean", approvers(stagesAndWindow + "      reason: {required: yes}\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.reason.required: ", `must be true or false, got the string "yes"`}}},
		{"reason pattern does not compile", approvers(stagesAndWindow + "      reason: {pattern: '^[A-Z'}\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.reason.pattern: ", `"^[A-Z" is not a valid regular expression (Go RE2 syntax): missing closing ]`}}},
		{"reason pattern with a lookahead", approvers(stagesAndWindow + "      reason: {pattern: '(?=x)'}\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.reason.pattern: ", "invalid or unsupported Perl syntax"}}},
		{"reason pattern too long", approvers(stagesAndWindow + "      reason: {pattern: '" + strings.Repeat("a", 513) + "'}\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.reason.pattern: ", "is 513 bytes long; the limit is 512"}}},
		{"reason max_len zero", approvers(stagesAndWindow + "      reason: {max_len: 0}\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.reason.max_len: ", "0 is out of range; use 1 to 4096 bytes"}}},
		{"reason max_len above 4096", approvers(stagesAndWindow + "      reason: {max_len: 5000}\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.reason.max_len: ", "5000 is out of range; use 1 to 4096 bytes"}}},
		{"ticket pattern does not compile", approvers(stagesAndWindow + "      ticket: '(INC|CHG'\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.ticket: ", `"(INC|CHG" is not a valid regular expression (Go RE2 syntax): missing closing )`}}},
		{"ticket pattern too long", approvers(stagesAndWindow + "      ticket: '" + strings.Repeat("a", 600) + "'\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.ticket: ", "is 600 bytes long; the limit is 512"}}},
		{"ticket as a list", approvers(stagesAndWindow + "      ticket: [INC]\n"),
			[]wantErr{{"policy.yaml:17: entitlements[0].approval.ticket: ", "must be a string, got a list"}}},
		{"approver fields with mode auto", with("      mode: auto\n", "      mode: auto\n      stages: [{groups: [dba], min: 1}]\n      window: 8h\n      pending_ttl: 1h\n      reason: {required: true}\n      ticket: 'CHG-[0-9]+'\n"),
			[]wantErr{
				{"policy.yaml:14: entitlements[0].approval.stages: ", "is allowed only with mode approvers"},
				{"policy.yaml:15: entitlements[0].approval.window: ", "is allowed only with mode approvers"},
				{"policy.yaml:16: entitlements[0].approval.pending_ttl: ", "is allowed only with mode approvers"},
				{"policy.yaml:17: entitlements[0].approval.reason: ", "is allowed only with mode approvers"},
				{"policy.yaml:18: entitlements[0].approval.ticket: ", "is allowed only with mode approvers"},
			}},
		{"approver fields are still checked under mode break_glass", with("      mode: auto\n", "      mode: break_glass\n      window: 8d\n"),
			[]wantErr{
				{"policy.yaml:13: entitlements[0].approval.mode: ", "is not an approval mode"},
				{"policy.yaml:14: entitlements[0].approval.window: ", `"8d" is not a duration`},
			}},

		// Break-glass: the entitlement's break_glass block starts on line 14,
		// its fields (see breakGlassFields) on lines 15 to 18.
		{"break_glass is not a mapping", head + entitlement + "    break_glass: true\n",
			[]wantErr{{"policy.yaml:14: entitlements[0].break_glass: ", "must be a mapping, got the boolean true"}}},
		{"break_glass without its required fields", head + entitlement + "    break_glass: {}\n",
			[]wantErr{
				{"policy.yaml:14: entitlements[0].break_glass: ", `missing required field "allowed"`},
				{"policy.yaml:14: entitlements[0].break_glass: ", `missing required field "max_ttl"`},
				{"policy.yaml:14: entitlements[0].break_glass: ", `missing required field "review_within"`},
				{"policy.yaml:14: entitlements[0].break_glass: ", `missing required field "reviewers"`},
			}},
		{"break_glass without max_ttl", breakGlass("      max_ttl: 5m\n", ""),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass: ", `missing required field "max_ttl"`}}},
		{"unknown break_glass field", breakGlass("      reviewers:", "      reviewer:"),
			[]wantErr{
				{"policy.yaml:15: entitlements[0].break_glass: ", `missing required field "reviewers"`},
				{"policy.yaml:18: entitlements[0].break_glass.reviewer: ", `unknown field; did you mean "reviewers"? (allowed here: allowed, max_ttl, review_within, reviewers, block_while_overdue)`},
			}},
		{"nobody allowed", breakGlass("[spiffe://writ.dev/demo, sre]", "[]"),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass.allowed: ", `at least one workload pattern (spiffe://…, or a "/*" prefix) or group name is required`}}},
		{"allowed as a string", breakGlass("[spiffe://writ.dev/demo, sre]", "sre"),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass.allowed: ", `must be a list, got the string "sre"`}}},
		{"allowed entry listed twice", breakGlass("[spiffe://writ.dev/demo, sre]", "[sre, spiffe://writ.dev/demo, sre]"),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass.allowed[2]: ", `"sre" is listed twice (also entitlements[0].break_glass.allowed[0])`}}},
		{"allowed empty entry", breakGlass("[spiffe://writ.dev/demo, sre]", "[sre, '']"),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass.allowed[1]: ", "must not be empty"}}},
		{"allowed workload in another trust domain", breakGlass("spiffe://writ.dev/demo", "spiffe://evil.dev/ns/oncall/*"),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass.allowed[0]: ", `pattern "spiffe://evil.dev/ns/oncall/*": trust domain "evil.dev" is not the policy's trust domain "writ.dev"`}}},
		{"allowed workload wildcard in the middle", breakGlass("spiffe://writ.dev/demo", "spiffe://writ.dev/*/oncall"),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass.allowed[0]: ", `'*' is allowed only as a final "/*" segment`}}},
		{"allowed workload without a path", breakGlass("spiffe://writ.dev/demo", "spiffe://writ.dev"),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass.allowed[0]: ", "needs a path"}}},
		{"allowed URI that is not a SPIFFE ID", breakGlass("spiffe://writ.dev/demo", "https://writ.dev/demo"),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass.allowed[0]: ", `"https://writ.dev/demo" is neither a SPIFFE ID pattern (spiffe://writ.dev/…) nor a group name`}}},
		{"allowed group with a wildcard", breakGlass("[spiffe://writ.dev/demo, sre]", "[spiffe://writ.dev/demo, 'sre-*']"),
			[]wantErr{{"policy.yaml:15: entitlements[0].break_glass.allowed[1]: ", `"sre-*" is neither a SPIFFE ID pattern`}}},
		{"break_glass max_ttl not a duration", breakGlass("max_ttl: 5m", "max_ttl: 5 minutes"),
			[]wantErr{{"policy.yaml:16: entitlements[0].break_glass.max_ttl: ", `"5 minutes" is not a duration (use e.g. 90s, 15m, 2h)`}}},
		{"break_glass max_ttl zero", breakGlass("max_ttl: 5m", "max_ttl: 0s"),
			[]wantErr{{"policy.yaml:16: entitlements[0].break_glass.max_ttl: ", `"0s" must be greater than zero`}}},
		{"break_glass max_ttl equal to the entitlement's", breakGlass("max_ttl: 5m", "max_ttl: 15m"),
			[]wantErr{{"policy.yaml:16: entitlements[0].break_glass.max_ttl: ", `"15m" must be shorter than the entitlement's max_ttl (15m0s): break-glass credentials live shorter than normal ones`}}},
		{"break_glass max_ttl above the entitlement's", breakGlass("max_ttl: 5m", "max_ttl: 1h"),
			[]wantErr{{"policy.yaml:16: entitlements[0].break_glass.max_ttl: ", `"1h" must be shorter than the entitlement's max_ttl (15m0s)`}}},
		{"break_glass max_ttl above 24h", breakGlass("max_ttl: 5m", "max_ttl: 25h"),
			[]wantErr{{"policy.yaml:16: entitlements[0].break_glass.max_ttl: ", `"25h" is above the limit of 24h`}}},
		{"review_within zero", breakGlass("review_within: 24h", "review_within: 0h"),
			[]wantErr{{"policy.yaml:17: entitlements[0].break_glass.review_within: ", `"0h" must be greater than zero`}}},
		{"review_within negative", breakGlass("review_within: 24h", "review_within: -1h"),
			[]wantErr{{"policy.yaml:17: entitlements[0].break_glass.review_within: ", `"-1h" must be greater than zero`}}},
		{"review_within above seven days", breakGlass("review_within: 24h", "review_within: 169h"),
			[]wantErr{{"policy.yaml:17: entitlements[0].break_glass.review_within: ", `"169h" is above the limit of 168h (7 days); every use must be reviewed within a week`}}},
		{"reviewers as a list", breakGlass("{groups: [security], min: 1}", "[security]"),
			[]wantErr{{"policy.yaml:18: entitlements[0].break_glass.reviewers: ", "must be a mapping, got a list"}}},
		{"reviewers without groups or min", breakGlass("{groups: [security], min: 1}", "{}"),
			[]wantErr{
				{"policy.yaml:18: entitlements[0].break_glass.reviewers: ", `missing required field "groups"`},
				{"policy.yaml:18: entitlements[0].break_glass.reviewers: ", `missing required field "min"`},
			}},
		{"no reviewer groups", breakGlass("groups: [security]", "groups: []"),
			[]wantErr{{"policy.yaml:18: entitlements[0].break_glass.reviewers.groups: ", "at least one reviewer group is required"}}},
		{"reviewer group listed twice", breakGlass("groups: [security]", "groups: [security, security]"),
			[]wantErr{{"policy.yaml:18: entitlements[0].break_glass.reviewers.groups[1]: ", `"security" is listed twice (also entitlements[0].break_glass.reviewers.groups[0])`}}},
		{"reviewers min zero", breakGlass("min: 1}", "min: 0}"),
			[]wantErr{{"policy.yaml:18: entitlements[0].break_glass.reviewers.min: ", "0 is out of range; use 1 to 10 reviewers"}}},
		{"reviewers min above ten", breakGlass("min: 1}", "min: 11}"),
			[]wantErr{{"policy.yaml:18: entitlements[0].break_glass.reviewers.min: ", "11 is out of range; use 1 to 10 reviewers"}}},
		{"block_while_overdue not a boolean", breakGlass("      reviewers:", "      block_while_overdue: yes\n      reviewers:"),
			[]wantErr{{"policy.yaml:18: entitlements[0].break_glass.block_while_overdue: ", `must be true or false, got the string "yes"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse("policy.yaml", []byte(tt.doc))
			if p != nil {
				t.Errorf("Parse() policy = %v, want nil", p)
			}
			checkErrs(t, err, tt.want)
		})
	}
}

func TestParse_Valid(t *testing.T) {
	t.Parallel()
	p, err := Load(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatalf("Load() err = %v", err)
	}
	want := &approval.Policy{
		Source:      filepath.Join("testdata", "valid.yaml"),
		TrustDomain: "writ.dev",
		Entitlements: map[string]*approval.Entitlement{
			"demo": {
				Name:    "demo",
				Owner:   "platform-team",
				Purpose: "demo credential",
				Recipe:  approval.Recipe{Kind: approval.KindJWT, Audience: []string{"orders-api"}},
				MaxTTL:  15 * time.Minute,
				Requesters: []approval.Requester{
					{Pattern: "spiffe://writ.dev/demo", ID: "spiffe://writ.dev/demo"},
					{Pattern: "spiffe://writ.dev/ns/prod/*", ID: "spiffe://writ.dev/ns/prod", Prefix: true},
				},
				Mode: approval.ModeAuto,
			},
			"orders-db.read": {
				Name:       "orders-db.read",
				Owner:      "orders-team",
				Purpose:    "read the orders database through Vault",
				Recipe:     approval.Recipe{Kind: approval.KindVaultToken, Role: "writ-orders"},
				MaxTTL:     time.Hour,
				Requesters: []approval.Requester{{Pattern: "spiffe://writ.dev/ns/prod/sa/orders", ID: "spiffe://writ.dev/ns/prod/sa/orders"}},
				Mode:       approval.ModeAuto,
			},
			"orders-db.creds": {
				Name:       "orders-db.creds",
				Owner:      "orders-team",
				Purpose:    "short-lived read-only database credentials for reports",
				Recipe:     approval.Recipe{Kind: approval.KindVaultSecret, Path: "database/creds/orders-ro"},
				MaxTTL:     30 * time.Minute,
				Requesters: []approval.Requester{{Pattern: "spiffe://writ.dev/ns/prod/sa/reports", ID: "spiffe://writ.dev/ns/prod/sa/reports"}},
				Mode:       approval.ModeAuto,
			},
			"orders-api.call": {
				Name:       "orders-api.call",
				Owner:      "orders-team",
				Purpose:    "call the orders API from batch jobs",
				Recipe:     approval.Recipe{Kind: approval.KindVaultTransitJWT, TransitKey: "writ-jwt", Audience: []string{"orders-api", "orders-api.internal"}},
				MaxTTL:     15 * time.Minute,
				Requesters: []approval.Requester{{Pattern: "spiffe://writ.dev/ns/batch/*", ID: "spiffe://writ.dev/ns/batch", Prefix: true}},
				Mode:       approval.ModeAuto,
			},
			"orders-db.write": {
				Name:    "orders-db.write",
				Owner:   "orders-team",
				Purpose: "change the orders database schema and data",
				Recipe:  approval.Recipe{Kind: approval.KindVaultToken, Role: "writ-orders-write"},
				MaxTTL:  30 * time.Minute,
				Requesters: []approval.Requester{
					{Pattern: "spiffe://writ.dev/ns/prod/sa/orders", ID: "spiffe://writ.dev/ns/prod/sa/orders"},
					{Pattern: "spiffe://writ.dev/ns/prod/sa/migrate", ID: "spiffe://writ.dev/ns/prod/sa/migrate"},
				},
				Mode: approval.ModeApprovers,
				Stages: []approval.Stage{
					{Groups: []string{"dba"}, Min: 2},
					{Groups: []string{"security", "sre"}, Min: 1},
				},
				Window:        8 * time.Hour,
				PendingTTL:    12 * time.Hour,
				Reason:        approval.ReasonRule{Required: true, Pattern: "^[A-Za-z].{9,}$", MaxLen: 500},
				TicketPattern: "^(INC|CHG)-[0-9]+$",
				BreakGlass: &approval.BreakGlassRule{
					Workloads:         []approval.Requester{{Pattern: "spiffe://writ.dev/ns/prod/sa/orders", ID: "spiffe://writ.dev/ns/prod/sa/orders"}},
					Groups:            []string{"sre"},
					MaxTTL:            5 * time.Minute,
					ReviewWithin:      24 * time.Hour,
					ReviewerGroups:    []string{"security"},
					MinReviewers:      1,
					BlockWhileOverdue: true,
				},
			},
			"payments-api.admin": {
				Name:       "payments-api.admin",
				Owner:      "payments-team",
				Purpose:    "break-fix access to the payments admin API",
				Recipe:     approval.Recipe{Kind: approval.KindJWT, Audience: []string{"payments-admin"}},
				MaxTTL:     10 * time.Minute,
				Requesters: []approval.Requester{{Pattern: "spiffe://writ.dev/ns/prod/sa/payments", ID: "spiffe://writ.dev/ns/prod/sa/payments"}},
				Mode:       approval.ModeApprovers,
				Stages:     []approval.Stage{{Groups: []string{"payments-oncall"}, Min: 1}},
				Window:     time.Hour,
				PendingTTL: approval.DefaultPendingTTL,
			},
		},
	}
	if diff := cmp.Diff(want, p, cmpopts.IgnoreFields(approval.Entitlement{}, "Condition"), cmpopts.IgnoreFields(approval.Policy{}, "Hash", "Text")); diff != "" {
		t.Errorf("Load() mismatch (-want +got):\n%s", diff)
	}
	// The policy version is the SHA-256 of the file's bytes as loaded.
	raw, err := os.ReadFile(p.Source)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); p.Hash != hex.EncodeToString(sum[:]) || !bytes.Equal(p.Text, raw) {
		t.Errorf("Load() Hash = %s, Text %d bytes; want the SHA-256 of the file's %d bytes and the bytes", p.Hash, len(p.Text), len(raw))
	}
	if c := p.Entitlements["demo"].Condition; c == nil || c.String() != `request.ttl <= duration("10m")` {
		t.Errorf("demo condition = %v, want request.ttl <= duration(\"10m\")", c)
	}
	if c := p.Entitlements["orders-db.read"].Condition; c != nil {
		t.Errorf("orders-db.read condition = %q, want none", c)
	}
}

// TestParse_Accepts covers YAML variations that must not be errors.
func TestParse_Accepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
	}{
		{"leading document marker", "---\n" + head + entitlement},
		{"document end marker", head + entitlement + "...\n"},
		{"empty documents after the policy", head + entitlement + "---\n---\n# nothing\n"},
		{"anchor without alias", with("trust_domain: writ.dev", "trust_domain: &td writ.dev")},
		{"quoted and block strings", with("owner: platform-team", `owner: "platform-team"`, "purpose: demo credential", "purpose: >\n      demo\n      credential")},
		{"approvers with every field", approvers(stagesAndWindow + "      pending_ttl: 168h\n      reason: {required: false, pattern: 'x', max_len: 4096}\n      ticket: '[A-Z]+-[0-9]+'\n")},
		{"approvers in block style", approvers("      stages:\n        - groups:\n            - dba\n            - sre\n          min: 10\n        - groups: [security]\n          min: 1\n      window: 168h\n")},
		{"the same group in two stages", approvers("      stages:\n        - {groups: [dba], min: 1}\n        - {groups: [dba, sre], min: 1}\n      window: 1m\n")},
		{"break_glass beside mode approvers", approvers(stagesAndWindow) + strings.TrimPrefix(breakGlass(), head+entitlement)},
		{"break_glass beside mode auto, not blocking", breakGlass("      allowed:", "      block_while_overdue: false\n      allowed:")},
		{"vault_secret path of one segment", with("jwt: {audience: [orders-api]}", "vault_secret: {path: secret}")},
		{"vault_secret path with dots, dashes and underscores", with("jwt: {audience: [orders-api]}", "vault_secret: {path: aws-prod/sts/..role._x-1...}")},
		{"vault_secret path of 256 bytes", with("jwt: {audience: [orders-api]}", "vault_secret: {path: database/creds/"+strings.Repeat("x", 241)+"}")},
		{"vault_secret in block style", with("      jwt: {audience: [orders-api]}\n", "      vault_secret:\n        path: \"database/creds/orders-ro\"\n")},
		{"vault_transit_jwt key of 128 bytes", with("jwt: {audience: [orders-api]}", "vault_transit_jwt: {audience: [a, b], key: "+strings.Repeat("K_-9", 32)+"}")},
		{"block condition", with("      mode: auto\n", "      mode: auto\n      condition: |\n        request.ttl <= duration(\"10m\") &&\n        request.path.startsWith(\"/\")\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse("policy.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse() err = %v", err)
			}
			if _, err := p.Lookup("demo"); err != nil {
				t.Errorf("Lookup(demo) err = %v", err)
			}
		})
	}
}

func TestLoad_Errors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(head+entitlement+strings.Repeat("#", MaxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(with("max_ttl: 15m", "max_ttl: 15x")), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		want   string
		wantIs error
	}{
		{"missing file", filepath.Join(dir, "nope.yaml"), "read policy: open " + filepath.Join(dir, "nope.yaml"), os.ErrNotExist},
		{"directory", dir, "read policy: read " + dir, nil},
		{"file larger than 1 MiB", big, big + ": policy file is larger than 1 MiB", approval.ErrInvalid},
		{"problem named by path and line", bad, bad + `:7: entitlements[0].max_ttl: "15x" is not a duration`, approval.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Load(tt.path)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Load() = %v, %v; want error starting %q", p, err, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Load() err = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}

func TestParse_ReportsAllProblemsSortedByLine(t *testing.T) {
	t.Parallel()
	doc := with("version: 1", "version: 3", "max_ttl: 15m", "max_ttl: 48h", "mode: auto", "mode: break_glass") +
		"  - name: Bad\n    owner: x\n"
	_, err := Parse("p.yaml", []byte(doc))
	checkErrs(t, err, []wantErr{
		{"p.yaml:1: version: ", "3 is not supported"},
		{"p.yaml:7: entitlements[0].max_ttl: ", "above the limit of 24h"},
		{"p.yaml:13: entitlements[0].approval.mode: ", "is not an approval mode"},
		{"p.yaml:14: entitlements[1]: ", `missing required field "purpose"`},
		{"p.yaml:14: entitlements[1]: ", `missing required field "max_ttl"`},
		{"p.yaml:14: entitlements[1]: ", `missing required field "requesters"`},
		{"p.yaml:14: entitlements[1]: ", `missing required field "issuer"`},
		{"p.yaml:14: entitlements[1]: ", `missing required field "approval"`},
		{"p.yaml:14: entitlements[1].name: ", `"Bad" is not a valid name`},
	})
}

func TestParse_TooManyProblems(t *testing.T) {
	t.Parallel()
	doc := head + entitlement + strings.Repeat("x: 1\n", 60)
	_, err := Parse("p.yaml", []byte(doc))
	errs := splitErrs(err)
	if len(errs) != 51 {
		t.Fatalf("Parse() returned %d problems, want 50 and a note:\n%v", len(errs), err)
	}
	if got, want := errs[50].Error(), "p.yaml: 10 more problems not shown; fix the ones above first"; got != want {
		t.Errorf("last problem = %q, want %q", got, want)
	}
	if got, want := errs[49].Error(), "p.yaml:63: x: unknown field (allowed here: version, trust_domain, entitlements)"; got != want {
		t.Errorf("problem 49 = %q, want %q", got, want)
	}
}

func TestParse_ErrorsAreClassified(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		want error
		not  error
	}{
		{"mode break_glass is invalid, not unsupported", with("mode: auto", "mode: break_glass"), approval.ErrInvalid, approval.ErrUnsupported},
		{"invalid value", with("max_ttl: 15m", "max_ttl: 15x"), approval.ErrInvalid, approval.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("policy.yaml", []byte(tt.doc))
			if !errors.Is(err, tt.want) {
				t.Errorf("Parse() err = %v, want errors.Is %v", err, tt.want)
			}
			if errors.Is(err, tt.not) {
				t.Errorf("Parse() err = %v, want not errors.Is %v", err, tt.not)
			}
		})
	}
}

func TestKinds(t *testing.T) {
	t.Parallel()
	valid, err := Load(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatalf("Load() err = %v", err)
	}
	jwtOnly, err := Parse("policy.yaml", []byte(head+entitlement+strings.ReplaceAll(entitlement, "name: demo", "name: demo2")))
	if err != nil {
		t.Fatalf("Parse() err = %v", err)
	}
	tests := []struct {
		name string
		p    *approval.Policy
		want []approval.CredentialKind
	}{
		{"every kind, sorted", valid, []approval.CredentialKind{approval.KindJWT, approval.KindVaultSecret, approval.KindVaultToken, approval.KindVaultTransitJWT}},
		{"one kind used twice", jwtOnly, []approval.CredentialKind{approval.KindJWT}},
		{"no entitlements", &approval.Policy{}, nil},
		{"nil policy", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, Kinds(tt.p)); diff != "" {
				t.Errorf("Kinds() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
