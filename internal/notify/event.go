package notify

import (
	"strings"
	"time"

	"github.com/writ-dev/writ/internal/textsafe"
)

// Kinds of Event.
const (
	KindRequestPending   = "request.pending"
	KindRequestApproved  = "request.approved"
	KindRequestDenied    = "request.denied"
	KindRequestRevoked   = "request.revoked"
	KindRequestExpired   = "request.expired"
	KindBreakGlassTaken  = "breakglass.taken"
	KindBreakGlassReview = "breakglass.reviewed"
)

// Event is something people should hear about. It must never hold a secret:
// no credential, token or lease secret belongs in any field.
type Event struct {
	// Kind is what happened, one of the Kind constants, e.g.
	// "request.pending".
	Kind string `json:"kind"`
	// Time is when it happened. Notify sets it from Config.Now if zero.
	Time time.Time `json:"time,omitzero"`
	// RequestID identifies the access request.
	RequestID string `json:"request_id,omitempty"`
	// Entitlement is the name of the entitlement requested.
	Entitlement string `json:"entitlement,omitempty"`
	// Beneficiary is the principal who would hold the access.
	Beneficiary string `json:"beneficiary,omitempty"`
	// Actor is the principal who acted (requested, approved, denied, …).
	Actor string `json:"actor,omitempty"`
	// Reason is the actor's justification, as they wrote it.
	Reason string `json:"reason,omitempty"`
	// Until is when the access ends; zero if not applicable.
	Until time.Time `json:"until,omitzero"`
	// Recipients are who should act, e.g. approver groups.
	Recipients []string `json:"recipients,omitempty"`
	// Fields holds optional extra facts.
	Fields map[string]string `json:"fields,omitempty"`
}

// maxReasonInText bounds the reason quoted in the text line; the full
// reason is in the structured event.
const maxReasonInText = 200

// Text returns e as one readable line for a chat channel, e.g.
//
//	[writ] request.pending req-1: db-admin for spiffe://td/api by oidc:https://idp#alice until 2030-01-01T10:00:00Z (to dba); reason: "fix outage"
//
// Values are flattened to one line, other control and format characters
// are written as visible escapes (\x1b, \u202e), and &, < and > are escaped
// for Slack's mrkdwn, so a reason cannot mention @channel, forge a link,
// or reorder the line with bidi controls. Fields are left out;
// they are in the structured event.
func (e Event) Text() string {
	var b strings.Builder
	b.WriteString("[writ] " + clean(e.Kind))
	if e.RequestID != "" {
		b.WriteString(" " + clean(e.RequestID))
	}
	var parts []string
	if e.Entitlement != "" {
		parts = append(parts, clean(e.Entitlement))
	}
	if e.Beneficiary != "" {
		parts = append(parts, "for "+clean(e.Beneficiary))
	}
	if e.Actor != "" {
		parts = append(parts, "by "+clean(e.Actor))
	}
	if !e.Until.IsZero() {
		parts = append(parts, "until "+e.Until.UTC().Format(time.RFC3339))
	}
	if len(e.Recipients) > 0 {
		parts = append(parts, "(to "+clean(strings.Join(e.Recipients, ", "))+")")
	}
	if len(parts) > 0 {
		b.WriteString(": " + strings.Join(parts, " "))
	}
	if e.Reason != "" {
		r := []rune(e.Reason)
		if len(r) > maxReasonInText {
			r = append(r[:maxReasonInText], '…')
		}
		b.WriteString(`; reason: "` + clean(string(r)) + `"`)
	}
	return b.String()
}

// slackEscaper escapes the characters Slack's mrkdwn treats as control
// characters, so text cannot open a mention (<!channel>, <@U123>) or a link
// (<https://…|label>).
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// lineBreaks flattens line breaks and tabs to spaces.
var lineBreaks = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ")

// clean returns s on one line, escaped for Slack, with every other control
// or format character (ESC, bidi controls, zero-width characters, invalid
// UTF-8) written as a visible escape such as \x1b or \u202e (T43).
func clean(s string) string {
	return slackEscaper.Replace(textsafe.Escape(lineBreaks.Replace(s)))
}
