package approval

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

var now = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

type constCondition bool

func (c constCondition) Eval(context.Context, Facts) (bool, error) { return bool(c), nil }
func (constCondition) String() string                              { return "const" }

type errCondition struct{}

func (errCondition) Eval(context.Context, Facts) (bool, error) { return false, errors.New("boom") }
func (errCondition) String() string                            { return "err" }

func testPolicy(mode Mode, cond Condition) *Policy {
	r, _ := ParseRequester("spiffe://td/ns/prod/*", "td")
	return &Policy{TrustDomain: "td", Entitlements: map[string]*Entitlement{
		"db": {Name: "db", MaxTTL: 15 * time.Minute, Requesters: []Requester{r}, Mode: mode, Condition: cond,
			Recipe: Recipe{Kind: KindJWT, Audience: []string{"db"}}},
	}}
}

func TestPolicy_Decide(t *testing.T) {
	t.Parallel()
	const api = Principal("spiffe://td/ns/prod/api")
	tests := []struct {
		name    string
		pol     *Policy
		who     Principal
		ent     string
		ttl     time.Duration
		wantErr error
		wantTTL time.Duration
	}{
		{name: "zero ttl means max_ttl", pol: testPolicy(ModeAuto, nil), who: api, ent: "db", wantTTL: 15 * time.Minute},
		{name: "shorter ttl is kept", pol: testPolicy(ModeAuto, nil), who: api, ent: "db", ttl: time.Minute, wantTTL: time.Minute},
		{name: "exactly max_ttl is allowed", pol: testPolicy(ModeAuto, nil), who: api, ent: "db", ttl: 15 * time.Minute, wantTTL: 15 * time.Minute},
		{name: "above max_ttl is refused, not capped", pol: testPolicy(ModeAuto, nil), who: api, ent: "db", ttl: 15*time.Minute + time.Nanosecond, wantErr: ErrTTLTooLong},
		{name: "negative ttl", pol: testPolicy(ModeAuto, nil), who: api, ent: "db", ttl: -1, wantErr: ErrInvalid},
		{name: "unknown entitlement", pol: testPolicy(ModeAuto, nil), who: api, ent: "nope", wantErr: ErrUnknownEntitlement},
		{name: "not eligible", pol: testPolicy(ModeAuto, nil), who: "spiffe://td/ns/dev/api", ent: "db", wantErr: ErrNotEligible},
		{name: "a person is not a requester rule match", pol: testPolicy(ModeAuto, nil), who: "oidc:x#alice", ent: "db", wantErr: ErrNotEligible},
		{name: "condition true", pol: testPolicy(ModeAuto, constCondition(true)), who: api, ent: "db", wantTTL: 15 * time.Minute},
		{name: "condition false", pol: testPolicy(ModeAuto, constCondition(false)), who: api, ent: "db", wantErr: ErrConditionFalse},
		{name: "condition error fails closed", pol: testPolicy(ModeAuto, errCondition{}), who: api, ent: "db", wantErr: errAny},
		{name: "approvers mode cannot be decided alone", pol: testPolicy(ModeApprovers, nil), who: api, ent: "db", wantErr: ErrUnsupported},
		{name: "nil policy", pol: nil, who: api, ent: "db", wantErr: ErrUnknownEntitlement},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := tt.pol.Decide(context.Background(), "g1", tt.who, tt.ent, tt.ttl, now)
			switch {
			case tt.wantErr == errAny:
				if err == nil {
					t.Fatal("Decide() err = nil, want an error")
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Decide() err = %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("Decide() err = %v", err)
			default:
				if g.TTL != tt.wantTTL || !g.Expires.Equal(now.Add(tt.wantTTL)) || g.ID != "g1" || g.Principal != tt.who || g.Rule == "" {
					t.Errorf("Decide() = %+v, want ttl %v from %v", g, tt.wantTTL, now)
				}
			}
		})
	}
}

var errAny = errors.New("any error")

// T32: over random TTLs, a grant's TTL is never above the policy maximum or
// the requested TTL, and it never ends after IssuedAt+MaxTTL.
func TestPolicy_Decide_TTLProperty(t *testing.T) {
	t.Parallel()
	pol := testPolicy(ModeAuto, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		req := time.Duration(rng.Int64N(int64(30 * time.Minute)))
		g, err := pol.Decide(context.Background(), "g", "spiffe://td/ns/prod/api", "db", req, now)
		if err != nil {
			if req <= 15*time.Minute {
				t.Fatalf("ttl %v refused: %v", req, err)
			}
			continue
		}
		if g.TTL > 15*time.Minute || (req != 0 && g.TTL > req) || g.Expires.After(now.Add(15*time.Minute)) {
			t.Fatalf("ttl %v gave grant ttl %v expiring %v", req, g.TTL, g.Expires)
		}
	}
}
