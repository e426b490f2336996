package notify_test

import (
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/internal/notify"
)

func TestEvent_Text(t *testing.T) {
	t.Parallel()
	until := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		event notify.Event
		want  string
	}{
		{
			name: "pending request names everything",
			event: notify.Event{
				Kind: notify.KindRequestPending, RequestID: "req-1", Entitlement: "db-admin",
				Beneficiary: "spiffe://example.test/api", Actor: "oidc:https://idp.example.test#alice",
				Reason: "fix outage", Until: until, Recipients: []string{"dba", "oncall"},
			},
			want: `[writ] request.pending req-1: db-admin for spiffe://example.test/api by oidc:https://idp.example.test#alice until 2030-01-01T10:00:00Z (to dba, oncall); reason: "fix outage"`,
		},
		{
			name:  "empty fields are left out",
			event: notify.Event{Kind: notify.KindRequestDenied, RequestID: "req-2"},
			want:  `[writ] request.denied req-2`,
		},
		{
			name:  "until is shown in UTC",
			event: notify.Event{Kind: notify.KindRequestApproved, Until: until.In(time.FixedZone("CET", 3600))},
			want:  `[writ] request.approved: until 2030-01-01T10:00:00Z`,
		},
		{
			name:  "reason cannot break the line or inject mrkdwn",
			event: notify.Event{Kind: notify.KindBreakGlassTaken, Reason: "prod down\n<!channel> <https://evil|click> & \x1b[31m"},
			want:  `[writ] breakglass.taken; reason: "prod down &lt;!channel&gt; &lt;https://evil|click&gt; &amp; \x1b[31m"`,
		},
		{
			name: "T43 bidi controls, zero-width characters and mentions in any field are escaped",
			event: notify.Event{Kind: notify.KindRequestPending, RequestID: "r\u202e1", Entitlement: "db<@U1>",
				Beneficiary: "spiffe://example.test/a\u200bpi", Actor: "oidc:x#<!here>", Recipients: []string{"dba\u2066"}},
			want: `[writ] request.pending r\u202e1: db&lt;@U1&gt; for spiffe://example.test/a\u200bpi by oidc:x#&lt;!here&gt; (to dba\u2066)`,
		},
		{
			name:  "long reason is truncated in the text",
			event: notify.Event{Kind: notify.KindRequestPending, Reason: strings.Repeat("é", 250)},
			want:  `[writ] request.pending; reason: "` + strings.Repeat("é", 200) + `…"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.event.Text(); got != tc.want {
				t.Errorf("Text() = %q, want %q", got, tc.want)
			}
		})
	}
}
