package notify_test

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/internal/notify"
	"github.com/writ-dev/writ/internal/textsafe"
)

// FuzzEventText checks that whatever the event's fields hold (T37, T43),
// its chat line is one line of valid UTF-8 without control or format
// characters and without a raw '<' or '>', so it can open no Slack mention
// or link.
func FuzzEventText(f *testing.F) {
	f.Add("req-1", "db-admin", "spiffe://example.test/api", "oidc:x#alice", "fix outage", "dba")
	f.Add("r\u202e", "<!channel>", "<https://evil|click>", "\x1b[2J", "line1\nline2\r\n\tx", "a\u200bb")
	f.Add("\xff", "&amp;", "<@U123>", "\\x1b", strings.Repeat("é", 300), "")
	f.Fuzz(func(t *testing.T, id, ent, ben, actor, reason, recipient string) {
		e := notify.Event{Kind: notify.KindRequestPending, RequestID: id, Entitlement: ent, Beneficiary: ben,
			Actor: actor, Reason: reason, Recipients: []string{recipient}, Until: time.Unix(1<<31, 0)}
		text := e.Text()
		if strings.ContainsAny(text, "<>\n\r") {
			t.Fatalf("Text() = %q holds a raw '<', '>' or line break", text)
		}
		for _, r := range text {
			if textsafe.Unsafe(r) {
				t.Fatalf("Text() = %q holds unsafe %U", text, r)
			}
		}
		if !strings.HasPrefix(text, "[writ] request.pending") {
			t.Fatalf("Text() = %q lost its prefix", text)
		}
	})
}

// FuzzCheckURL checks the webhook URL rule for any input: never a panic,
// every accepted URL is https or http to a loopback host, and an error never
// repeats the URL (it may embed a credential).
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://hooks.slack.com/services/T/B/secret", "http://127.0.0.1:8080/hook", "http://localhost/x",
		"http://example.com/x", "ftp://x", "", "https://", "https://u:p@h/x", "http://[::1]:9/x", "http://127.0.0.1.evil.com/", "HTTPS://X"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := notify.CheckURL(raw)
		if err != nil {
			if !errors.Is(err, notify.ErrInvalidConfig) {
				t.Fatalf("CheckURL(%q) = %v, want ErrInvalidConfig", raw, err)
			}
			if len(raw) > 8 && strings.Contains(err.Error(), raw) {
				t.Fatalf("CheckURL(%q) error repeats the URL: %v", raw, err)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("CheckURL(%q) accepted an unparsable URL", raw)
		}
		switch u.Scheme {
		case "https":
		case "http":
			host := u.Hostname()
			if ip := net.ParseIP(host); !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
				t.Fatalf("CheckURL(%q) accepted plain http to %q", raw, host)
			}
		default:
			t.Fatalf("CheckURL(%q) accepted scheme %q", raw, u.Scheme)
		}
	})
}
