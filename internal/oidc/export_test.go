package oidc

// Causes of rejections, exported to the black-box tests.
var (
	ErrTokenTooLarge  = errTokenTooLarge
	ErrEmptyToken     = errEmptyToken
	ErrMissingSubject = errMissingSubject
	ErrBadSubject     = errBadSubject
	ErrBadGroups      = errBadGroups
	ErrBadEmail       = errBadEmail
)
