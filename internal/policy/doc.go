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
//	    issuer:                     # exactly one of:
//	      jwt: {audience: [orders-api]}     # a JWT; at least one audience
//	      # vault_token: {role: writ-orders} # a Vault token; role [a-zA-Z0-9_-]+
//	    approval:
//	      mode: auto                # auto (approvers, break_glass: not yet supported)
//	      condition: 'request.ttl <= duration("10m")'  # optional, mode auto only
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
