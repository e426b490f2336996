package approval

import "time"

// State is where a request is in its lifecycle:
//
//	pending ──▶ approved ──▶ revoked | expired
//	   │
//	   └──▶ denied | expired | cancelled
//
// Denied, expired, cancelled and revoked are final: a resolved request never
// changes state again.
type State string

// Request states.
const (
	StatePending   State = "pending"
	StateApproved  State = "approved"
	StateDenied    State = "denied"
	StateExpired   State = "expired"
	StateCancelled State = "cancelled"
	StateRevoked   State = "revoked"
)

// Final reports whether s can never change again.
func (s State) Final() bool {
	return s == StateDenied || s == StateExpired || s == StateCancelled || s == StateRevoked
}

// Decision is one reviewer's verdict.
type Decision string

// Decisions.
const (
	DecisionApprove Decision = "approve"
	DecisionDeny    Decision = "deny"
)

// Stage is one step of an approval: Min distinct people from any of Groups.
// Every stage of an entitlement must be satisfied.
type Stage struct {
	// Groups whose members may approve this stage.
	Groups []string
	// Min is how many distinct approvers the stage needs.
	Min int
}

// ReasonRule constrains the reason a requester gives.
type ReasonRule struct {
	// Required makes an empty reason an error.
	Required bool
	// Pattern, if set, is a regular expression (RE2 syntax) the reason must
	// match in full.
	Pattern string
	// MaxLen bounds the reason's length in bytes; 0 means DefaultMaxReasonLen.
	MaxLen int
}

// DefaultMaxReasonLen bounds reasons, comments and tickets when the policy
// sets no limit (reliability case T37: bounded input).
const DefaultMaxReasonLen = 1024

// Review is one person's decision on a pending request.
type Review struct {
	// Reviewer is the authenticated person ("oidc:<issuer>#<subject>").
	Reviewer Principal
	// Groups are the reviewer's groups at the time of the review.
	Groups []string
	// Decision is approve or deny.
	Decision Decision
	// Comment is the reviewer's note.
	Comment string
	// Stage is the index of the stage an approval counted toward (-1 for a denial).
	Stage int
	// At is when the review was made.
	At time.Time
}

// Request is a principal asking for an entitlement for a beneficiary. Once
// approved it is an approval: credentials may be minted under it until
// WindowEnd.
type Request struct {
	// ID is unique ("r_…").
	ID string
	// Requester is who asked: the workload itself, or a person on its behalf.
	Requester Principal
	// Beneficiary is the workload the credentials are for.
	Beneficiary Principal
	// Entitlement is the entitlement's name.
	Entitlement string
	// Duration is the approval window asked for; it starts at approval.
	Duration time.Duration
	// Reason is the requester's justification.
	Reason string
	// Ticket is an optional change or incident reference.
	Ticket string
	// Rule is the requester rule that made the beneficiary eligible.
	Rule string

	// State is the lifecycle state.
	State State
	// CreatedAt is when the request was made.
	CreatedAt time.Time
	// PendingUntil is when an unresolved request expires.
	PendingUntil time.Time
	// Reviews are the decisions so far, in order.
	Reviews []Review

	// ApprovedAt starts the window; zero until approved.
	ApprovedAt time.Time
	// WindowEnd is ApprovedAt + Duration; no credential outlives it.
	WindowEnd time.Time

	// ResolvedAt is when the request reached a final state or approval.
	ResolvedAt time.Time
	// ResolvedBy is who denied, cancelled or revoked it (empty for expiry).
	ResolvedBy Principal
	// ResolutionNote is the comment or reason given with the resolution.
	ResolutionNote string

	// Version is the store's compare-and-swap version; the domain never sets it.
	Version uint64
}

// GrantRecord is the inventory entry for one credential minted under a
// request, used to revoke everything minted under an approval.
type GrantRecord struct {
	// GrantID is the grant's ID.
	GrantID string
	// RequestID is the approval it was minted under.
	RequestID string
	// Ref identifies the credential.
	Ref CredentialRef
	// IssuedAt is when it was minted.
	IssuedAt time.Time
}
