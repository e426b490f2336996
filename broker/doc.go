// Package broker is Writ's gRPC adapter: it authenticates workloads by the
// SPIFFE ID in their verified X.509-SVID, asks the policy for a decision,
// mints a credential through an issuer, records the grant in the ledger and
// only then returns the credential.
//
// The grant pipeline fails closed: if the ledger cannot record a grant, the
// credential just minted is revoked and the caller gets UNAVAILABLE. Every
// denial is recorded too. Domain errors become gRPC status codes in one
// place, errors.go.
//
// Decisions about requests and break-glass uses (a request, a review, a
// refused review, an approval or denial, a revocation, an expiry, a
// break-glass use, its review, closure and escalation) are made through
// Approvals.In inside one transaction of Config.Commit, which also holds
// their ledger records (audit.Log.Prepare), a revocation queue entry for
// every live credential they end and, for Config.DenyListKinds, the
// deny-list entry. A failed append aborts the decision (UNAVAILABLE); a
// crash leaves all of it or none. The revocations are then attempted, and
// their outcomes recorded, after the commit. Every record carries the hash
// of the policy in force in Details["policy"] (RecordPolicy records each
// version's text once).
package broker
