package policy

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"

	"github.com/writ-dev/writ/approval"
)

// Limits on conditions. A condition runs on every auto-approved request, so
// neither its size nor its evaluation cost may be unbounded.
const (
	// MaxConditionLen is the longest condition expression, in bytes.
	MaxConditionLen = 4096
	// ConditionCostLimit is the CEL runtime cost at which evaluation stops
	// with an error. Ordinary conditions cost a few dozen units.
	ConditionCostLimit = 100_000
)

// request is what a condition sees as the variable "request".
type request struct {
	SpiffeID    string        `cel:"spiffe_id"`
	TrustDomain string        `cel:"trust_domain"`
	Path        string        `cel:"path"`
	Entitlement string        `cel:"entitlement"`
	TTL         time.Duration `cel:"ttl"`
}

// celEnv is built once: it is immutable and safe for concurrent use.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[request](), ext.ParseStructTags(true)),
		cel.Variable("request", cel.ObjectType("policy.request")),
		cel.Variable("now", cel.TimestampType),
		cel.ParserExpressionSizeLimit(MaxConditionLen),
	)
})

// celProgramOptions bounds evaluation: by cost (unless costLimit is 0) and
// by the context passed to Eval, checked every 100 comprehension steps.
func celProgramOptions(costLimit uint64) []cel.ProgramOption {
	opts := []cel.ProgramOption{cel.InterruptCheckFrequency(100)}
	if costLimit > 0 {
		opts = append(opts, cel.CostLimit(costLimit))
	}
	return opts
}

// condition is a compiled CEL condition; it implements approval.Condition.
type condition struct {
	expr string
	prg  cel.Program
}

var _ approval.Condition = (*condition)(nil)

// CompileCondition compiles a CEL expression into an approval.Condition.
//
// The expression sees two variables: request, with fields spiffe_id,
// trust_domain, path, entitlement (strings) and ttl (a duration), and now (a
// timestamp). It must have type bool. Evaluation stops with an error once it
// costs more than ConditionCostLimit or its context is done.
//
// CompileCondition returns an error wrapping approval.ErrInvalid if the
// expression is longer than MaxConditionLen, does not compile, or does not
// have type bool.
func CompileCondition(expr string) (approval.Condition, error) {
	c, err := compile(expr)
	if err != nil {
		return nil, fmt.Errorf("condition %w: %w", err, approval.ErrInvalid)
	}
	return c, nil
}

// compileMu serializes env.Compile; see compile.
var compileMu sync.Mutex

// compile does the work of CompileCondition; its errors are phrased to
// follow the condition's field path.
func compile(expr string) (*condition, error) {
	if len(expr) > MaxConditionLen {
		return nil, fmt.Errorf("is %d bytes long; the limit is %d", len(expr), MaxConditionLen)
	}
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("cannot be compiled: %w", err)
	}
	// cel-go shares its type checker's lazily built tables across compiles
	// of one environment without a lock (a race seen under -race when a
	// compile with an undeclared name meets one with a comprehension), so
	// compiles are serialized. They happen at policy load, not per request.
	compileMu.Lock()
	ast, iss := env.Compile(expr)
	compileMu.Unlock()
	if iss.Err() != nil {
		multiline := strings.Contains(expr, "\n")
		msgs := make([]string, 0, len(iss.Errors()))
		for _, e := range iss.Errors() {
			switch line, col := e.Location.Line(), e.Location.Column()+1; {
			case line < 1 || col < 1:
				msgs = append(msgs, e.Message)
			case multiline:
				msgs = append(msgs, fmt.Sprintf("%s (expression line %d, column %d)", e.Message, line, col))
			default:
				msgs = append(msgs, fmt.Sprintf("%s (column %d)", e.Message, col))
			}
		}
		return nil, errors.New("does not compile: " + strings.Join(msgs, "; "))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must evaluate to a bool, but its type is %s", t)
	}
	compileMu.Lock()
	prg, err := env.Program(ast, celProgramOptions(ConditionCostLimit)...)
	compileMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("cannot be compiled: %w", err)
	}
	return &condition{expr: expr, prg: prg}, nil
}

// Eval evaluates the condition for f. An evaluation error (a missing value,
// an overflow, the cost limit, ctx being done) is returned as an error,
// never as false, so callers fail closed.
func (c *condition) Eval(ctx context.Context, f approval.Facts) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("condition %q: %w", c.expr, err)
	}
	vars := map[string]any{
		"request": request{
			SpiffeID:    f.Principal.String(),
			TrustDomain: f.Principal.TrustDomain(),
			Path:        f.Principal.Path(),
			Entitlement: f.Entitlement,
			TTL:         f.TTL,
		},
		"now": f.Now,
	}
	out, _, err := c.prg.ContextEval(ctx, vars)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return false, fmt.Errorf("condition %q: evaluation interrupted: %w", c.expr, ctxErr)
		}
		return false, fmt.Errorf("condition %q: %w", c.expr, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("condition %q returned %s, not a bool", c.expr, out.Type())
	}
	return b, nil
}

// String returns the source expression.
func (c *condition) String() string { return c.expr }
