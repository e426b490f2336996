package revoke

import "github.com/writ-dev/writ/approval"

// Outcome is what RevokeAll did with one credential.
type Outcome string

// Outcomes.
const (
	// OutcomeRevoked: the issuer ended the credential.
	OutcomeRevoked Outcome = "revoked"
	// OutcomeExpired: the credential was already past its expiry; the
	// issuer was not called.
	OutcomeExpired Outcome = "expired"
	// OutcomeQueued: the attempt failed and the credential is in the
	// durable queue; RunOnce will retry it.
	OutcomeQueued Outcome = "queued"
	// OutcomeFailed: the attempt failed and the credential could not be
	// queued either (or can never be revoked: ErrNoRef). Result.Error
	// says why; the caller must not treat the approval as fully revoked.
	OutcomeFailed Outcome = "failed"
)

// Result is the outcome for one credential.
type Result struct {
	// GrantID is the grant the credential was minted for.
	GrantID string
	// Ref is the credential.
	Ref approval.CredentialRef
	// Outcome is what happened.
	Outcome Outcome
	// Error is the failed attempt's (and, for OutcomeFailed, the queue's)
	// error text; empty for OutcomeRevoked and OutcomeExpired.
	Error string
}

// Receipt reports what RevokeAll did for every grant of a request, in the
// order the grants were given.
type Receipt struct {
	// RequestID is the approval being revoked.
	RequestID string
	// Results has one entry per grant.
	Results []Result
}

// Counts returns how many results have each outcome.
func (r Receipt) Counts() map[Outcome]int {
	m := make(map[Outcome]int, 4)
	for _, res := range r.Results {
		m[res.Outcome]++
	}
	return m
}

// Complete reports whether every credential is revoked or expired, so
// that nothing is left to retry.
func (r Receipt) Complete() bool {
	for _, res := range r.Results {
		if res.Outcome != OutcomeRevoked && res.Outcome != OutcomeExpired {
			return false
		}
	}
	return true
}
