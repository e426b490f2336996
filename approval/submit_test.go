package approval

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestNewRequest(t *testing.T) {
	t.Parallel()
	valid := RequestInput{ID: "r1", Requester: rita, Beneficiary: workload, Entitlement: "db", Duration: 2 * time.Hour, Reason: "deploy the schema migration", Ticket: "CHG-42"}
	with := func(f func(*RequestInput)) RequestInput {
		in := valid
		f(&in)
		return in
	}
	strict := func(e *Entitlement) {
		e.Reason = ReasonRule{Required: true, Pattern: `[A-Za-z].{9,}`, MaxLen: 40}
		e.TicketPattern = `(INC|CHG)-[0-9]+`
	}
	tests := []struct {
		name    string
		in      RequestInput
		ent     func(*Entitlement) // changes the entitlement, if set
		noEnt   bool
		wantErr error
		wantMsg string
	}{
		{name: "valid request for a workload by a person", in: valid},
		{name: "beneficiary defaults to the requester", in: with(func(in *RequestInput) { in.Requester, in.Beneficiary = workload, "" })},
		{name: "empty entitlement name takes the entitlement's", in: with(func(in *RequestInput) { in.Entitlement = "" })},
		{name: "strict rules are met", in: valid, ent: strict},
		{name: "duration equal to the window", in: with(func(in *RequestInput) { in.Duration = 8 * time.Hour })},
		{name: "reason with newline and tab", in: with(func(in *RequestInput) { in.Reason = "line one\n\tline two" })},
		{name: "optional reason may be empty", in: with(func(in *RequestInput) { in.Reason = "" })},

		{name: "auto entitlement is asked for directly", in: valid, ent: func(e *Entitlement) { e.Mode = ModeAuto },
			wantErr: ErrInvalid, wantMsg: "is approved automatically; ask for a credential directly"},
		{name: "unknown mode is unsupported", in: valid, ent: func(e *Entitlement) { e.Mode = "break_glass" }, wantErr: ErrUnsupported},
		{name: "no entitlement", in: valid, noEnt: true, wantErr: ErrUnknownEntitlement},
		{name: "input names another entitlement", in: with(func(in *RequestInput) { in.Entitlement = "other" }), wantErr: ErrInvalid},
		{name: "no stages fails closed", in: valid, ent: func(e *Entitlement) { e.Stages = nil }, wantErr: errAny},
		{name: "no id", in: with(func(in *RequestInput) { in.ID = "" }), wantErr: ErrInvalid},
		{name: "no requester", in: with(func(in *RequestInput) { in.Requester = "" }), wantErr: ErrInvalid},
		{name: "beneficiary outside every requester rule", in: with(func(in *RequestInput) { in.Beneficiary = "spiffe://td/ns/dev/api" }),
			wantErr: ErrNotEligible},
		{name: "a person cannot be the beneficiary", in: with(func(in *RequestInput) { in.Beneficiary = "" }), wantErr: ErrNotEligible},
		{name: "zero duration", in: with(func(in *RequestInput) { in.Duration = 0 }), wantErr: ErrInvalid},
		{name: "negative duration", in: with(func(in *RequestInput) { in.Duration = -time.Hour }), wantErr: ErrInvalid},
		{name: "duration above the window is refused, not capped", in: with(func(in *RequestInput) { in.Duration = 8*time.Hour + time.Nanosecond }),
			wantErr: ErrTTLTooLong, wantMsg: "approval window 8h0m0s"},
		{name: "required reason missing", in: with(func(in *RequestInput) { in.Reason = " \n" }), ent: strict,
			wantErr: ErrInvalid, wantMsg: "a reason is required"},
		{name: "reason not matching the pattern", in: with(func(in *RequestInput) { in.Reason = "1234567890ab" }), ent: strict,
			wantErr: ErrInvalid, wantMsg: "required pattern"},
		{name: "pattern must match the whole reason", in: with(func(in *RequestInput) { in.Reason = "!! deploy the schema" }), ent: strict,
			wantErr: ErrInvalid, wantMsg: "required pattern"},
		{name: "reason over the policy's max_len", in: with(func(in *RequestInput) { in.Reason = strings.Repeat("a", 41) }), ent: strict,
			wantErr: ErrInvalid, wantMsg: "the limit is 40"},
		{name: "reason over the default limit", in: with(func(in *RequestInput) { in.Reason = strings.Repeat("a", DefaultMaxReasonLen+1) }),
			wantErr: ErrInvalid, wantMsg: "the limit is 1024"},
		{name: "reason with a control character", in: with(func(in *RequestInput) { in.Reason = "ok\x00" }), wantErr: ErrInvalid, wantMsg: "U+0000"},
		{name: "reason with a C1 control character", in: with(func(in *RequestInput) { in.Reason = "ok\u0085" }), wantErr: ErrInvalid},
		{name: "reason that is not UTF-8", in: with(func(in *RequestInput) { in.Reason = "ok\xff" }), wantErr: ErrInvalid, wantMsg: "UTF-8"},
		{name: "ticket not matching the pattern", in: with(func(in *RequestInput) { in.Ticket = "JIRA-1" }), ent: strict,
			wantErr: ErrInvalid, wantMsg: "ticket"},
		{name: "ticket required by a pattern", in: with(func(in *RequestInput) { in.Ticket = "" }), ent: strict, wantErr: ErrInvalid},
		{name: "ticket with trailing text", in: with(func(in *RequestInput) { in.Ticket = "CHG-42 and more" }), ent: strict, wantErr: ErrInvalid},
		{name: "ticket over the limit", in: with(func(in *RequestInput) { in.Ticket = strings.Repeat("1", DefaultMaxReasonLen+1) }), wantErr: ErrInvalid},
		{name: "broken reason pattern fails closed", in: valid, ent: func(e *Entitlement) { e.Reason.Pattern = "(" }, wantErr: errAny},
		{name: "broken ticket pattern fails closed", in: valid, ent: func(e *Entitlement) { e.TicketPattern = "a)(b" }, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := approverEntitlement(oneDBA...)
			if tt.ent != nil {
				tt.ent(e)
			}
			if tt.noEnt {
				e = nil
			}
			got, err := NewRequest(tt.in, e, now)
			switch {
			case tt.wantErr == errAny:
				if err == nil {
					t.Fatal("NewRequest() err = nil, want an error")
				}
				return
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("NewRequest() err = %v, want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			case err != nil:
				t.Fatalf("NewRequest() err = %v", err)
			}
			beneficiary := tt.in.Beneficiary
			if beneficiary == "" {
				beneficiary = tt.in.Requester
			}
			want := Request{
				ID: tt.in.ID, Requester: tt.in.Requester, Beneficiary: beneficiary, Entitlement: "db",
				Duration: tt.in.Duration, Reason: tt.in.Reason, Ticket: tt.in.Ticket, Rule: "entitlements.db.requesters[0]",
				State: StatePending, CreatedAt: now, PendingUntil: now.Add(24 * time.Hour),
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("NewRequest() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRequest_PendingTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		pendingTTL time.Duration
		want       time.Time
	}{
		{name: "zero pending_ttl means the default", pendingTTL: 0, want: now.Add(DefaultPendingTTL)},
		{name: "pending_ttl from the policy", pendingTTL: time.Hour, want: now.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := approverEntitlement(oneDBA...)
			e.PendingTTL = tt.pendingTTL
			r := pendingRequest(t, e)
			if !r.PendingUntil.Equal(tt.want) {
				t.Errorf("PendingUntil = %v, want %v", r.PendingUntil, tt.want)
			}
		})
	}
}

// FuzzNewRequest (T37) checks that request validation never panics and that
// every accepted reason and ticket is bounded, valid UTF-8 and free of
// control characters other than newline and tab.
func FuzzNewRequest(f *testing.F) {
	f.Add("deploy the schema migration", "CHG-42", int64(time.Hour))
	f.Add("", "", int64(0))
	f.Add("x\x00y", "INC-1\n", int64(-1))
	f.Add(strings.Repeat("é", 600), "CHG-1", int64(8*time.Hour))
	e := approverEntitlement(oneDBA...)
	e.Reason = ReasonRule{Required: true, Pattern: `[A-Za-z].{9,}`, MaxLen: 1000}
	e.TicketPattern = `(INC|CHG)-[0-9]+`
	f.Fuzz(func(t *testing.T, reason, ticket string, d int64) {
		in := RequestInput{ID: "r1", Requester: rita, Beneficiary: workload, Duration: time.Duration(d), Reason: reason, Ticket: ticket}
		r, err := NewRequest(in, e, now)
		if err != nil {
			return
		}
		for _, s := range []string{r.Reason, r.Ticket} {
			if len(s) > DefaultMaxReasonLen || !utf8.ValidString(s) || strings.ContainsFunc(s, func(c rune) bool { return unicode.IsControl(c) && c != '\n' && c != '\t' }) {
				t.Fatalf("accepted %q", s)
			}
		}
		if r.Duration <= 0 || r.Duration > e.Window || strings.TrimSpace(r.Reason) == "" {
			t.Fatalf("accepted %+v", r)
		}
	})
}
