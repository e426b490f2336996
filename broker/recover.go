package broker

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/textsafe"
)

// ActionPanicRecovered is the ledger action recorded when a call by a known
// caller panicked: the call failed with INTERNAL and the broker kept serving.
const ActionPanicRecovered = "panic_recovered"

// panicRecordTimeout bounds the ledger record of a recovered panic.
const panicRecordTimeout = 5 * time.Second

// HandshakePanic is told about a panic recovered during a TLS handshake on
// one of the broker's listeners (pass it to spiffe.WithPanicHandler). It
// logs the panic with its stack and counts it in writ_panics_recovered_total
// {where="handshake"}. No caller is known yet, so nothing is recorded in the
// ledger.
func (s *Server) HandshakePanic(where string, recovered any) {
	s.metrics.observePanic("handshake")
	s.log.Error("recovered from a panic during a TLS handshake; that connection was closed and the broker keeps serving",
		slog.String("where", where),
		slog.String("panic", textsafe.Escape(fmt.Sprint(recovered))),
		slog.String("stack", string(debug.Stack())))
}

// recoverCall turns a panic in an interceptor or handler of the call in ctx
// into an INTERNAL error for that call alone. It logs the panic with its
// stack, counts it in writ_panics_recovered_total{where="rpc"} and, when
// the caller is known, records it in the ledger. Use it deferred, with the
// returned error assigned to the call's error.
func (s *Server) recoverCall(ctx context.Context, method string, recovered any) error {
	stack := debug.Stack()
	s.metrics.observePanic("rpc")
	attrs := []any{
		slog.String("method", method),
		slog.String("panic", textsafe.Escape(fmt.Sprint(recovered))),
		slog.String("stack", string(stack)),
	}
	c, known := callerFrom(ctx)
	if known {
		attrs = append(attrs, slog.String("caller", textsafe.Escape(string(c.principal()))), slog.String("request_id", requestIDFrom(ctx)))
	}
	s.log.ErrorContext(ctx, "recovered from a panic in a call; it failed with INTERNAL and the broker keeps serving", attrs...)
	if known {
		s.recordPanic(ctx, c, method)
	}
	return status.Error(codes.Internal, "internal error: the broker recorded it; retry later or tell its operators")
}

// recordPanic appends the ledger record of a recovered panic. A failure (or
// another panic) there is logged, never raised.
func (s *Server) recordPanic(ctx context.Context, c caller, method string) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "recording a recovered panic panicked too", slog.String("panic", textsafe.Escape(fmt.Sprint(r))))
		}
	}()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), panicRecordTimeout)
	defer cancel()
	_, _ = s.record(rctx, audit.Event{
		Action:  ActionPanicRecovered,
		Actor:   string(c.principal()),
		Outcome: "error",
		Reason:  "internal error while serving " + method + "; the call failed",
		Details: map[string]string{"method": method, "request_id": requestIDFrom(ctx)},
	})
}
