// Package revoke ends every credential minted under an approval, now if it
// can and later if it must.
//
// # Causal revocation
//
// When an approval is revoked the broker hands RevokeAll the grants
// recorded under it (approval.Store.Grants). Each credential is either
//
//   - already past its expiry (plus Config.ExpiryLeeway): nothing to do,
//     the issuer is not called (OutcomeExpired);
//   - revoked now by the Issuer of its kind (OutcomeRevoked);
//   - left in the durable Queue to be retried by RunOnce/Run with
//     exponential backoff and full jitter (OutcomeQueued);
//   - or, only if the Queue itself cannot be written, reported as
//     OutcomeFailed with the reason: never dropped silently.
//
// # Write-ahead queueing
//
// RevokeAll enqueues each live credential before it calls the issuer,
// claimed for a lease of two attempt timeouts, and removes it once the
// issuer succeeds. A broker that crashes mid-revocation therefore leaves
// the item in the queue, and the next RunOnce after the lease (on this
// replica or, when the queue is shared, another) finishes the job.
//
// A caller that must queue the revocations in the same transaction as the
// decision that implies them (the broker: a revoked or expired approval, an
// unjustified break-glass use) splits RevokeAll in two: Plan says what to
// queue without touching the queue or the issuers, the caller writes
// Plan.Items with its decision, and Attempt, after the commit, revokes them.
//
// # Claims
//
// Queue.Due claims the items it returns by pushing their NextAt forward by
// a lease in the same atomic write, so two RunOnce calls (two goroutines,
// or two replicas sharing a queue) never work on one item at the same
// time. The lease covers every attempt of the batch; if it still runs out
// (an issuer that ignores its context), the worst case is a second,
// harmless revocation: Issuer.Revoke must succeed on an ended credential.
//
// Items are identified by ItemID(ref), so queueing the same credential
// twice keeps one item.
package revoke
