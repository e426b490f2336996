package approval

import "errors"

// ErrUnknownEntitlement is returned when no entitlement has the requested name.
var ErrUnknownEntitlement = errors.New("unknown entitlement")

// ErrNotEligible is returned when the principal matches none of the
// entitlement's requester rules.
var ErrNotEligible = errors.New("principal is not eligible for this entitlement")

// ErrConditionFalse is returned when the entitlement's CEL condition
// evaluated to false for this request.
var ErrConditionFalse = errors.New("entitlement condition not met")

// ErrTTLTooLong is returned when the requested TTL exceeds what the
// entitlement allows. Writ never caps silently: the caller must ask again.
var ErrTTLTooLong = errors.New("requested ttl exceeds the limit")

// ErrInvalid is returned for malformed input (a negative TTL, an empty name, a
// principal that is not a SPIFFE ID).
var ErrInvalid = errors.New("invalid argument")

// ErrUnsupported is returned when the policy asks for something this version
// of Writ does not implement (an approval mode, an issuer kind).
var ErrUnsupported = errors.New("not supported")

// ErrNotFound is returned when no request has the given ID.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned by a store when a compare-and-swap loses, or when an
// ID already exists.
var ErrConflict = errors.New("conflict")

// ErrResolved is returned when acting on a request that is no longer pending
// (or, for revocation, no longer approved). Resolved states never change.
var ErrResolved = errors.New("request already resolved")

// ErrSelfApproval is returned when a requester or beneficiary tries to review
// their own request (separation of duties).
var ErrSelfApproval = errors.New("requester may not review their own request")

// ErrAlreadyReviewed is returned when a person reviews the same request twice.
var ErrAlreadyReviewed = errors.New("already reviewed by this person")

// ErrNotApprover is returned when a reviewer is in none of the groups of a
// stage still needing approval.
var ErrNotApprover = errors.New("not an eligible approver")

// ErrNotApproved is returned when a credential is asked for under an
// entitlement that needs an approval and no live approval covers it.
var ErrNotApproved = errors.New("no live approval")

// ErrWindowEnded is returned when the approval's window is over.
var ErrWindowEnded = errors.New("approval window has ended")

// ErrNotRequester is returned when someone other than the requester tries to
// cancel a request.
var ErrNotRequester = errors.New("only the requester may cancel a request")

// ErrBreakGlassNotAllowed is returned when break-glass is asked for under an
// entitlement whose policy has no break_glass block (or no longer has one,
// when a break-glass use is reviewed).
var ErrBreakGlassNotAllowed = errors.New("no break_glass block in the policy")

// ErrReviewOverdue is returned when a principal tries to break glass while
// the review of one of their earlier break-glass uses is overdue and the
// entitlement's rule blocks that. The message names the overdue use and
// when its review was due.
var ErrReviewOverdue = errors.New("break-glass review overdue")

// ErrBackendDenied is returned by an issuer whose backend (Vault) refused
// the broker itself: the broker's own permissions need fixing, so retrying
// will not help. The error names what is missing.
var ErrBackendDenied = errors.New("credential backend refused the broker")
