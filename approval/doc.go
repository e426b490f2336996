// Package approval is Writ's domain: entitlements, eligibility, the decision
// whether a principal may hold a credential, the request lifecycle with its
// separation of duties, and the grant handed to an issuer.
//
// It imports only the standard library. It knows nothing about gRPC, SPIFFE
// libraries, stores, Vault or the ledger: the broker records what happened.
// Every function that depends on time takes it as an argument.
//
// # Requests and approvals
//
// An entitlement with approval mode "approvers" is granted only under an
// approval. A request moves through these states:
//
//	NewRequest ─▶ pending ──ApplyReview (every stage satisfied)──▶ approved ──Revoke──▶ revoked
//	                 │                                                 │
//	                 ├──ApplyReview (deny)──▶ denied                   └──Expire (window ended)──▶ expired
//	                 ├──Cancel (requester)──▶ cancelled
//	                 └──Expire (pending deadline passed)──▶ expired
//
// Denied, cancelled, revoked and expired are final. Reviews follow the
// separation of duties: the requester and the beneficiary never review,
// nobody reviews twice, and each approval counts toward one stage only (see
// ApplyReview). The approval window starts when the last needed approval
// arrives and lasts the requested duration; DecideUnder never lets a grant
// outlive it. Service applies these pure functions inside the Store's
// compare-and-swap.
//
// Revoking an approval that is already revoked, or already expired, is not
// refused: Service.Revoke changes nothing and returns the grants again
// (Revocation.Again), so that whatever is still live can be revoked again.
//
// # Decisions in one transaction
//
// The broker must store a decision together with its ledger records and the
// revocations it implies, or none of them. Service.In binds a Service to a
// Tx, a Store and BreakGlassStore that are one transaction of the caller's:
// the broker opens the transaction (internal/txn), makes the decision
// through the bound Service, writes the records and queue entries through
// the same transaction and commits. ExpireOne, EscalateOne and
// PrepareBreakGlass with StoreBreakGlass exist for that: each makes one
// decision the caller can commit with its records.
//
// # Break-glass
//
// An entitlement with a break-glass rule may also be taken at once, without
// approval, by the workloads and people the rule allows, for at most the
// rule's shorter max TTL (DecideBreakGlass). Every use leaves a review
// obligation, due ReviewWithin later:
//
//	DecideBreakGlass ─▶ open ──ApplyBreakGlassReview (unjustified, or MinReviewers justified)──▶ closed
//	                     │
//	                     └──(past ReviewDue) overdue: EscalateOverdue marks it once; BlockWhileOverdue
//	                        stops its taker from breaking glass again until it is closed
//
// Neither the taker nor the beneficiary may review a use. Break-glass never
// touches requests, so it never counts as an approval.
package approval
