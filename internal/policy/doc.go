// Package policy loads Writ's policy-as-code file into an *approval.Policy.
//
// The file is YAML, read strictly: unknown keys, duplicate keys, values of the
// wrong type and missing required fields are errors, and every error names
// the file, the line and the field path, for example
//
//	policy.yaml:12: entitlements[0].max_ttl: "15x" is not a duration (use e.g. 90s, 15m, 2h)
//
// All problems in a file are reported together, sorted by line. Files larger
// than 1 MiB, files with more than one YAML document and YAML aliases are
// rejected.
//
// # Format
//
//	version: 1                      # required; the only version is 1
//	trust_domain: writ.dev          # required; requesters must be in it
//	entitlements:                   # required; at least one
//	  - name: demo                  # [a-z0-9][a-z0-9._-]{0,62}, unique
//	    owner: platform-team        # required: who answers for it
//	    purpose: "demo credential"  # required: why it exists
//	    max_ttl: 15m                # Go duration, > 0 and <= 24h
//	    requesters:                 # at least one SPIFFE ID in trust_domain:
//	      - spiffe://writ.dev/demo          # exactly this workload, or
//	      - spiffe://writ.dev/ns/prod/*     # any workload under /ns/prod/
//	    issuer:                     # exactly one of (see Issuers below):
//	      jwt: {audience: [orders-api]}     # a JWT; at least one audience
//	      # vault_token: {role: writ-orders}
//	      # vault_secret: {path: database/creds/orders-ro}
//	      # vault_transit_jwt: {key: writ-jwt, audience: [orders-api]}
//	    approval:
//	      mode: auto                # auto or approvers
//	      condition: 'request.ttl <= duration("10m")'  # optional, mode auto only
//	    break_glass: {…}            # optional; see Break-glass below
//
// # Issuers
//
// The issuer block says what a grant mints. It holds exactly one of these
// keys, each a mapping with exactly the fields shown:
//
//	jwt: {audience: [orders-api]}
//	vault_token: {role: writ-orders}
//	vault_secret: {path: database/creds/orders-ro}
//	vault_transit_jwt: {key: writ-jwt, audience: [orders-api]}
//
// jwt is a JWT signed by writd's own key. audience, the "aud" claim, is a
// list of one or more non-empty strings.
//
// vault_token is a Vault token created from the token role role (1-128 of
// letters, digits, '_' and '-'), at auth/token/create/<role>.
//
// vault_secret is a dynamic secret, held under a Vault lease, read from path
// in Vault, such as database credentials from <mount>/creds/<role>. path is
// 1 to 256 bytes of segments made of letters, digits, '_', '-' and '.',
// separated by single '/': no leading or trailing '/', no empty segment and
// no "." or ".." segment, so it cannot climb out of its mount or carry a
// query or an encoded character.
//
// vault_transit_jwt is a JWT signed by the Vault transit key key (1-128 of
// letters, digits, '_' and '-'), whose private half never leaves Vault.
// audience follows the jwt rules. Kinds returns the kinds a policy uses, so
// a daemon builds only the issuers it needs.
//
// # Approvers
//
// With mode approvers, credentials are minted only under an approval given
// by people:
//
//	approval:
//	  mode: approvers
//	  stages:                   # required; every stage must be satisfied
//	    - {groups: [dba], min: 2}             # 2 distinct people from dba
//	    - {groups: [security, sre], min: 1}   # then 1 from security or sre
//	  window: 8h                # required; > 0 and <= 168h (7 days)
//	  pending_ttl: 24h          # optional; default 24h, <= 168h
//	  reason: {required: true, pattern: '^[A-Za-z].{9,}$', max_len: 500}  # optional
//	  ticket: '^(INC|CHG)-[0-9]+$'                                        # optional
//
// A stage needs min (1 to 10) distinct people from any of its groups (group
// names are the approvers' OIDC group claims; each listed once per stage).
// The requester and the beneficiary never count, nobody counts twice, and
// one person counts toward one stage only: the first stage, in file order,
// that still needs approvals and lists one of their groups. Any approver of
// any stage may deny.
//
// window is how long an approval lasts; it starts when the last needed
// approval arrives, and every credential minted under it expires by its
// end (and within max_ttl). A request asking for longer than the window is
// refused. pending_ttl is how long a request waits for reviews before it
// expires.
//
// reason constrains the requester's reason: required rejects an empty one,
// pattern must match the whole reason when one is given, and max_len (1 to
// 4096 bytes, default 1024) bounds it. ticket, if set, is a pattern every
// request's ticket must match in full, so it makes a ticket required.
// Patterns use Go's RE2 syntax (no backreferences or lookaround), at most
// 512 bytes. stages, window, pending_ttl, reason and ticket are errors with
// mode auto, and condition is an error with mode approvers.
//
// # Break-glass
//
// An entitlement may also be taken at once, without approval, during an
// incident. Every use is reviewed afterwards by other people. The optional
// break_glass block is independent of approval (it works with either mode):
//
//	break_glass:
//	  allowed:                  # required; who may break glass:
//	    - spiffe://writ.dev/ns/prod/sa/orders   # workloads: SPIFFE ID or "/*" prefix in trust_domain
//	    - sre                                   # people: a group name (anything not spiffe://)
//	  max_ttl: 5m               # required; > 0 and shorter than the entitlement's max_ttl
//	  review_within: 24h        # required; > 0 and <= 168h (7 days)
//	  reviewers: {groups: [security], min: 1}  # required; min 1 to 10
//	  block_while_overdue: true # optional; default true
//
// A workload breaks glass only for itself, and a person for themselves or
// for a workload; a workload that gets the credential must also be one of
// the entitlement's requesters (break-glass skips approval, not
// eligibility). A TTL above the break-glass max_ttl is refused, never
// capped. Each use is due for review review_within later; it closes when
// min distinct people from the reviewer groups find it justified, or at
// once when one finds it unjustified. The taker and the beneficiary never
// review it. With block_while_overdue, a principal whose earlier use (of
// any entitlement) is overdue for review may not break glass on this one
// until that review is closed. "mode: break_glass" is an error that points
// here.
//
// # Conditions
//
// A condition is a CEL expression (https://cel.dev) compiled when the file is
// loaded; it must have type bool. It sees two variables:
//
//	request.spiffe_id     string     the requesting workload's SPIFFE ID
//	request.trust_domain  string     its trust domain
//	request.path          string     its path, such as "/ns/prod/api"
//	request.entitlement   string     the entitlement's name
//	request.ttl           duration   the TTL the grant would have
//	now                   timestamp  the decision time
//
// For example: request.path.startsWith("/ns/prod/") && now.getHours("UTC") < 18.
// A condition that fails to evaluate denies the request (it is an error, not
// false), and evaluation stops once it exceeds ConditionCostLimit.
package policy
