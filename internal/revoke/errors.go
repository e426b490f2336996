package revoke

import "errors"

// ErrNoIssuer is the attempt error when no Issuer is configured for a
// credential's kind. The item stays queued (a later configuration may add
// the issuer) and raises an alert after Config.AlertAfter attempts.
var ErrNoIssuer = errors.New("no issuer for credential kind")

// ErrNoRef is reported (OutcomeFailed) for a grant whose credential
// reference has no ID: there is nothing an issuer could revoke, and
// retrying cannot help.
var ErrNoRef = errors.New("credential reference has no id")
