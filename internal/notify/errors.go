package notify

import "errors"

// ErrInvalidConfig is returned by New when the Config is unusable: a URL that
// is not https (or http to a loopback host), or a negative limit.
var ErrInvalidConfig = errors.New("invalid notify configuration")

// ErrUndelivered is returned by Webhook.Close when its deadline passed before
// every queued notification was sent; the rest are counted as dropped.
var ErrUndelivered = errors.New("notifications left undelivered")
