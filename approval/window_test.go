package approval

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// approverPolicy holds entitlement "db" (see approverEntitlement) needing
// stages.
func approverPolicy(stages ...Stage) *Policy {
	return &Policy{TrustDomain: "td", Entitlements: map[string]*Entitlement{"db": approverEntitlement(stages...)}}
}

func TestPolicy_DecideUnder(t *testing.T) {
	t.Parallel()
	// The approval runs from now+1h to now+3h; max_ttl is 15m.
	windowEnd := now.Add(3 * time.Hour)
	tests := []struct {
		name     string
		state    State
		pol      func(*Policy) // changes the policy, if set
		ttl      time.Duration
		at       time.Time
		wantTTL  time.Duration
		wantErr  error
		wantMsgs []string
	}{
		{name: "zero ttl inside the window is max_ttl", state: StateApproved, at: now.Add(2 * time.Hour), wantTTL: 15 * time.Minute},
		{name: "shorter ttl is kept", state: StateApproved, ttl: time.Minute, at: now.Add(2 * time.Hour), wantTTL: time.Minute},
		{name: "exactly max_ttl", state: StateApproved, ttl: 15 * time.Minute, at: now.Add(2 * time.Hour), wantTTL: 15 * time.Minute},
		// T15: at the window end - 1ms the TTL is clipped to the window.
		{name: "zero ttl near the end is clipped to the window", state: StateApproved, at: windowEnd.Add(-time.Millisecond), wantTTL: time.Millisecond},
		{name: "zero ttl five minutes before the end", state: StateApproved, at: windowEnd.Add(-5 * time.Minute), wantTTL: 5 * time.Minute},
		{name: "ttl exactly the time left", state: StateApproved, ttl: 5 * time.Minute, at: windowEnd.Add(-5 * time.Minute), wantTTL: 5 * time.Minute},
		{name: "ttl past the window end is refused, not capped", state: StateApproved, ttl: 10 * time.Minute, at: windowEnd.Add(-5 * time.Minute),
			wantErr: ErrTTLTooLong, wantMsgs: []string{"5m0s left", "2030-01-01T03:00:00Z"}},
		{name: "ttl above max_ttl is refused", state: StateApproved, ttl: 16 * time.Minute, at: now.Add(2 * time.Hour),
			wantErr: ErrTTLTooLong, wantMsgs: []string{"max_ttl 15m0s"}},
		{name: "negative ttl", state: StateApproved, ttl: -time.Second, at: now.Add(2 * time.Hour), wantErr: ErrInvalid},
		// T15: at the window end + 1ms it fails closed.
		{name: "after the window end", state: StateApproved, at: windowEnd.Add(time.Millisecond), wantErr: ErrWindowEnded},
		{name: "exactly at the window end", state: StateApproved, at: windowEnd, wantErr: ErrWindowEnded},
		{name: "pending request", state: StatePending, at: now.Add(time.Hour), wantErr: ErrNotApproved, wantMsgs: []string{"is pending"}},
		{name: "denied request", state: StateDenied, at: now.Add(2 * time.Hour), wantErr: ErrNotApproved, wantMsgs: []string{"is denied"}},
		{name: "revoked approval", state: StateRevoked, at: now.Add(2 * time.Hour), wantErr: ErrNotApproved, wantMsgs: []string{"is revoked"}},
		{name: "entitlement left the policy", state: StateApproved, at: now.Add(2 * time.Hour),
			pol: func(p *Policy) { delete(p.Entitlements, "db") }, wantErr: ErrUnknownEntitlement},
		{name: "beneficiary no longer eligible", state: StateApproved, at: now.Add(2 * time.Hour),
			pol: func(p *Policy) { p.Entitlements["db"].Requesters = nil }, wantErr: ErrNotEligible},
		{name: "a lowered max_ttl applies at once", state: StateApproved, at: now.Add(2 * time.Hour),
			pol: func(p *Policy) { p.Entitlements["db"].MaxTTL = time.Minute }, wantTTL: time.Minute},
		{name: "an entitlement without max_ttl fails closed", state: StateApproved, at: now.Add(2 * time.Hour),
			pol: func(p *Policy) { p.Entitlements["db"].MaxTTL = 0 }, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pol := approverPolicy(oneDBA...)
			if tt.pol != nil {
				tt.pol(pol)
			}
			r := requestIn(t, tt.state)
			g, err := pol.DecideUnder(context.Background(), "g1", r, tt.ttl, tt.at)
			switch {
			case tt.wantErr == errAny:
				if err == nil {
					t.Fatalf("DecideUnder() = %+v, want an error", g)
				}
				return
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DecideUnder() err = %v, want %v", err, tt.wantErr)
				}
				for _, m := range tt.wantMsgs {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("DecideUnder() err = %v, want it to mention %q", err, m)
					}
				}
				return
			case err != nil:
				t.Fatalf("DecideUnder() err = %v", err)
			}
			want := Grant{
				ID: "g1", Principal: workload, Entitlement: "db", Recipe: Recipe{Kind: KindJWT, Audience: []string{"db"}},
				Rule: "entitlements.db.requesters[0]", TTL: tt.wantTTL, IssuedAt: tt.at, Expires: tt.at.Add(tt.wantTTL), RequestID: "r1", NotAfter: windowEnd,
			}
			if diff := cmp.Diff(want, g); diff != "" {
				t.Errorf("DecideUnder() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// T32 and T15: over random TTLs and times around the window's end, a grant
// never outlives the window or max_ttl, never exceeds the TTL asked for, and
// nothing is granted at or after the end.
func TestPolicy_DecideUnder_WindowProperty(t *testing.T) {
	t.Parallel()
	pol := approverPolicy(oneDBA...)
	r := requestIn(t, StateApproved)
	maxTTL := pol.Entitlements["db"].MaxTTL
	rng := rand.New(rand.NewPCG(3, 4))
	granted := 0
	for range 20000 {
		// now within ±20 minutes of the end, at millisecond resolution,
		// always including end-1ms and end+1ms.
		var at time.Time
		switch rng.IntN(10) {
		case 0:
			at = r.WindowEnd.Add(-time.Millisecond)
		case 1:
			at = r.WindowEnd.Add(time.Millisecond)
		default:
			at = r.WindowEnd.Add(time.Duration(rng.Int64N(int64(40*time.Minute))) - 20*time.Minute).Truncate(time.Millisecond)
		}
		ttl := time.Duration(rng.Int64N(int64(30 * time.Minute)))
		if rng.IntN(4) == 0 {
			ttl = 0
		}
		g, err := pol.DecideUnder(context.Background(), "g", r, ttl, at)
		if !at.Before(r.WindowEnd) {
			if !errors.Is(err, ErrWindowEnded) {
				t.Fatalf("at %v (end %v) ttl %v: err = %v, want ErrWindowEnded", at, r.WindowEnd, ttl, err)
			}
			continue
		}
		if err != nil {
			if ttl == 0 || ttl > maxTTL || ttl > r.WindowEnd.Sub(at) {
				continue
			}
			t.Fatalf("at %v ttl %v refused: %v", at, ttl, err)
		}
		granted++
		if g.TTL <= 0 || g.TTL > maxTTL || (ttl != 0 && g.TTL > ttl) || g.Expires.After(r.WindowEnd) || !g.Expires.Equal(at.Add(g.TTL)) {
			t.Fatalf("at %v ttl %v gave ttl %v expiring %v (window end %v)", at, ttl, g.TTL, g.Expires, r.WindowEnd)
		}
		if at.Equal(r.WindowEnd.Add(-time.Millisecond)) && ttl == 0 && g.TTL != time.Millisecond {
			t.Fatalf("at end-1ms: ttl %v, want clipped to 1ms", g.TTL)
		}
	}
	if granted == 0 {
		t.Fatal("no grant was ever made; the property was not exercised")
	}
}

func TestEffectiveTTL(t *testing.T) {
	t.Parallel()
	e := &Entitlement{MaxTTL: 15 * time.Minute}
	tests := []struct {
		name                  string
		duration, issuerLimit time.Duration
		want                  time.Duration
	}{
		{name: "max_ttl below the duration", duration: 2 * time.Hour, want: 15 * time.Minute},
		{name: "duration below max_ttl", duration: 5 * time.Minute, want: 5 * time.Minute},
		{name: "issuer limit below both", duration: 2 * time.Hour, issuerLimit: time.Minute, want: time.Minute},
		{name: "issuer limit above both is irrelevant", duration: 2 * time.Hour, issuerLimit: time.Hour, want: 15 * time.Minute},
		{name: "zero issuer limit means none", duration: 10 * time.Minute, want: 10 * time.Minute},
	}
	if got := EffectiveTTL(nil, time.Hour, 0); got != 0 {
		t.Errorf("EffectiveTTL(nil entitlement) = %v, want 0", got)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := EffectiveTTL(e, tt.duration, tt.issuerLimit); got != tt.want {
				t.Errorf("EffectiveTTL(%v, %v) = %v, want %v", tt.duration, tt.issuerLimit, got, tt.want)
			}
		})
	}
}

func TestPolicy_Explain(t *testing.T) {
	t.Parallel()
	pol := approverPolicy(twoDBAsThen...)
	pol.Entitlements["db"].Reason = ReasonRule{Required: true, MaxLen: 200}
	pol.Entitlements["db"].TicketPattern = `CHG-[0-9]+`
	auto := testPolicy(ModeAuto, constCondition(true))
	tests := []struct {
		name      string
		pol       *Policy
		principal Principal
		ent       string
		want      Explanation
		wantErr   error
	}{
		{name: "eligible workload and the approvals it needs", pol: pol, principal: workload, ent: "db", want: Explanation{
			Entitlement: "db", Eligible: true, Rule: "entitlements.db.requesters[0]", Mode: ModeApprovers,
			MaxTTL: 15 * time.Minute, Window: 8 * time.Hour, Stages: twoDBAsThen,
			Reason: ReasonRule{Required: true, MaxLen: 200}, TicketPattern: `CHG-[0-9]+`,
		}},
		{name: "ineligible principal is not an error", pol: pol, principal: "spiffe://td/ns/dev/api", ent: "db", want: Explanation{
			Entitlement: "db", Mode: ModeApprovers, MaxTTL: 15 * time.Minute, Window: 8 * time.Hour, Stages: twoDBAsThen,
			Reason: ReasonRule{Required: true, MaxLen: 200}, TicketPattern: `CHG-[0-9]+`,
		}},
		{name: "auto entitlement shows its condition", pol: auto, principal: workload, ent: "db", want: Explanation{
			Entitlement: "db", Eligible: true, Rule: "entitlements.db.requesters[0]", Mode: ModeAuto, MaxTTL: 15 * time.Minute, Condition: "const",
		}},
		{name: "unknown entitlement", pol: pol, principal: workload, ent: "nope", wantErr: ErrUnknownEntitlement},
		{name: "no policy", principal: workload, ent: "db", wantErr: ErrUnknownEntitlement},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.pol.Explain(tt.principal, tt.ent)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Explain() err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Explain() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
