package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/approval"
)

// now is the pinned decision time of these tests.
var now = time.Date(2030, 1, 1, 9, 30, 0, 0, time.UTC)

var facts = approval.Facts{
	Principal:   "spiffe://writ.dev/ns/prod/api",
	Entitlement: "demo",
	TTL:         5 * time.Minute,
	Now:         now,
}

// nested returns an expression that iterates n^3 times.
func nested(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	l := "[" + strings.Join(items, ",") + "]"
	return fmt.Sprintf("%s.all(x, %s.all(y, %s.all(z, x + y + z >= 0)))", l, l, l)
}

func TestCondition_Eval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		expr    string
		facts   approval.Facts
		want    bool
		wantErr string
	}{
		{"ttl within the limit", `request.ttl <= duration("10m")`, facts, true, ""},
		{"ttl above the limit", `request.ttl <= duration("1m")`, facts, false, ""},
		{"every request field", `request.spiffe_id == "spiffe://writ.dev/ns/prod/api" && request.trust_domain == "writ.dev" && ` +
			`request.path == "/ns/prod/api" && request.entitlement == "demo" && request.ttl == duration("5m")`, facts, true, ""},
		{"path prefix", `request.path.startsWith("/ns/staging/")`, facts, false, ""},
		{"decision time", `now == timestamp("2030-01-01T09:30:00Z") && now.getHours("UTC") < 18`, facts, true, ""},
		{"person principal has no trust domain or path", `request.trust_domain == "" && request.path == ""`,
			approval.Facts{Principal: "oidc:https://idp#alice", Now: now}, true, ""},
		{"evaluation error is an error, not false", `1 / (size(request.path) - 12) == 1`, facts, false, "division by zero"},
		{"cost limit stops evaluation", nested(100), facts, false, "cost limit exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := CompileCondition(tt.expr)
			if err != nil {
				t.Fatalf("CompileCondition(%q) err = %v", tt.expr, err)
			}
			if c.String() != tt.expr {
				t.Errorf("String() = %q, want %q", c.String(), tt.expr)
			}
			got, err := c.Eval(context.Background(), tt.facts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Eval() = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				if got {
					t.Errorf("Eval() = true alongside error %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Eval() = %v, %v; want %v, nil", got, err, tt.want)
			}
		})
	}
}

func TestCondition_Eval_ContextDone(t *testing.T) {
	t.Parallel()
	c, err := CompileCondition(`request.ttl <= duration("10m")`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := c.Eval(ctx, facts); !errors.Is(err, context.Canceled) || got {
		t.Errorf("Eval(canceled ctx) = %v, %v; want false, context.Canceled", got, err)
	}
}

// TestCondition_Eval_InterruptedByContext checks that a long evaluation
// stops when ctx ends, independently of the cost limit.
func TestCondition_Eval_InterruptedByContext(t *testing.T) {
	t.Parallel()
	env, err := celEnv()
	if err != nil {
		t.Fatal(err)
	}
	expr := nested(300)
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast, celProgramOptions(0)...)
	if err != nil {
		t.Fatal(err)
	}
	c := &condition{expr: expr, prg: prg}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// Uninterrupted, the expression would run 27 million iterations and
	// return true with no error.
	got, err := c.Eval(ctx, facts)
	if !errors.Is(err, context.DeadlineExceeded) || got || !strings.Contains(err.Error(), "evaluation interrupted") {
		t.Errorf("Eval() = %v, %v; want false, evaluation interrupted: context.DeadlineExceeded", got, err)
	}
}

// TestCondition_Eval_NonBoolResult covers the defensive check for a program
// whose result is not a bool, which compile rules out.
func TestCondition_Eval_NonBoolResult(t *testing.T) {
	t.Parallel()
	env, err := celEnv()
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(`size(request.path)`)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	c := &condition{expr: "size(request.path)", prg: prg}
	if got, err := c.Eval(context.Background(), facts); err == nil || !strings.Contains(err.Error(), "returned int, not a bool") || got {
		t.Errorf("Eval() = %v, %v; want false and a \"not a bool\" error", got, err)
	}
}

// TestCELEnv checks that the CEL environment builds; compile reports a
// failure here as "cannot be compiled", which no expression can trigger.
func TestCELEnv(t *testing.T) {
	t.Parallel()
	if _, err := celEnv(); err != nil {
		t.Fatalf("celEnv() err = %v", err)
	}
}

func TestCompileCondition_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		expr string
		want string
	}{
		{"undeclared variable", `principal == "x"`, `condition does not compile: undeclared reference to 'principal'`},
		{"unknown request field", `request.ttls > duration("1m")`, `does not compile: undefined field 'ttls'`},
		{"type mismatch", `request.ttl < 5`, `does not compile: found no matching overload for '_<_'`},
		{"not a bool", `request.path`, `must evaluate to a bool, but its type is string`},
		{"too long", strings.Repeat(" ", MaxConditionLen) + "true", "condition is 4100 bytes long; the limit is 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := CompileCondition(tt.expr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CompileCondition() = %v, %v; want error containing %q", c, err, tt.want)
			}
			if !errors.Is(err, approval.ErrInvalid) {
				t.Errorf("CompileCondition() err = %v, want errors.Is approval.ErrInvalid", err)
			}
		})
	}
}
