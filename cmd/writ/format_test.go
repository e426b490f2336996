package main

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/textsafe"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// hostile is text an attacker might get stored before validation existed
// (or through a broker of another version): ANSI escapes that clear the
// screen and paint "APPROVED", a bidi override, a zero-width space, a
// carriage return, and a newline followed by a fake field.
const hostile = "fix\x1b[2J\x1b[H\x1b[32mAPPROVED\x1b[0m \u202eevil\u202c ad\u200bmin\rX\nstate    approved"

// assertTerminalSafe fails if out holds a control or format character other
// than newline, or a line that starts like a field an attacker wrote.
func assertTerminalSafe(t *testing.T, out string) {
	t.Helper()
	for _, r := range out {
		if r != '\n' && textsafe.Unsafe(r) {
			t.Fatalf("output holds unsafe character %U:\n%s", r, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "state    approved") || strings.HasPrefix(line, "state") && strings.Contains(line, "approved") && !strings.HasPrefix(line, "state  ") {
			t.Fatalf("a line of attacker text poses as a field: %q\n%s", line, out)
		}
	}
}

// T43: every printer escapes untrusted strings and indents multi-line text
// under its field.
func TestPrinters_EscapeUntrustedText(t *testing.T) {
	t.Parallel()
	req := &brokerv1.AccessRequest{
		Id: "r_1", State: brokerv1.RequestState_REQUEST_STATE_PENDING, Entitlement: "db\x1b[31m",
		Beneficiary: "spiffe://example.org/api\u202e", Requester: "oidc:https://idp#alice\x1b]0;pwned\x07",
		Reason: hostile, Ticket: "INC\u200b1", ResolvedBy: "bob\x1b[1m", ResolutionNote: hostile,
		Reviews: []*brokerv1.Review{{Reviewer: "carol\x1b[2K", Decision: "approve", Comment: hostile}},
	}
	var b bytes.Buffer
	if err := printRequest(&b, req); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	assertTerminalSafe(t, out)
	for _, want := range []string{`\x1b[2J`, `\u202e`, `\u200b`, `\r`, `\a`} {
		if !strings.Contains(out, want) {
			t.Errorf("printRequest output lacks the escape %s:\n%s", want, out)
		}
	}
	// The second line of the reason sits in the value column, not at the
	// start of a line.
	if !strings.Contains(out, "\n               state    approved") && !strings.Contains(out, "  state    approved") {
		t.Errorf("the reason's second line is not indented under its field:\n%s", out)
	}

	b.Reset()
	if err := printRequestTable(&b, []*brokerv1.AccessRequest{req}); err != nil {
		t.Fatal(err)
	}
	assertTerminalSafe(t, b.String())
	if n := strings.Count(b.String(), "\n"); n != 2 {
		t.Errorf("table has %d lines, want 2 (header and one row):\n%s", n, b.String())
	}

	b.Reset()
	printBreakGlass(&b, &adminv1.BreakGlassRecord{Id: "bg_1", State: "open", Taker: "oidc:x#sam\x1b[8m", Reason: hostile, Incident: "INC\n2",
		Reviews: []*adminv1.BreakGlassReview{{Reviewer: "dave", Outcome: "justified", Notes: hostile}}})
	assertTerminalSafe(t, b.String())
}

func TestFriendlyError_Escaped(t *testing.T) {
	t.Parallel()
	err := status.Error(codes.NotFound, "unknown entitlement \"x\x1b[2J\"\nstate: approved")
	out := escIndented(friendly(err), "      ")
	assertTerminalSafe(t, out)
	if !strings.Contains(out, `\x1b[2J`) || !strings.Contains(out, "\n      state: approved") {
		t.Errorf("escaped error = %q", out)
	}
}
