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
