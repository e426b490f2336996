// Package notify tells people about access requests through a webhook.
//
// Webhook posts each Event as JSON to one URL, in the shape Slack incoming
// webhooks accept: {"text": "<one readable line>", "writ": {<the event>}}.
// Slack shows the text and ignores "writ"; other receivers can use the
// structured event. Delivery is asynchronous and best effort: Notify never
// blocks the caller, a bounded queue absorbs bursts (and drops, with an error
// log, when full), and a single worker retries server errors and network
// failures with exponential backoff and jitter. Notifications are not the
// record of what happened; the audit trail is.
//
// Events carry no secrets: names, principals, reasons and times only, never
// a credential, token or lease secret. The webhook URL itself usually is a
// secret (Slack's embeds its credential), so it is never logged.
package notify
