package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/spiffe"
)

type callerKey struct{}

type requestIDKey struct{}

// withCaller returns ctx carrying the authenticated caller.
func withCaller(ctx context.Context, id spiffeid.ID) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// callerFrom returns the authenticated caller set by the interceptor.
func callerFrom(ctx context.Context) (spiffeid.ID, bool) {
	id, ok := ctx.Value(callerKey{}).(spiffeid.ID)
	return id, ok && !id.IsZero()
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// UnaryInterceptor authenticates every unary call: the caller's SPIFFE ID
// comes only from the verified peer certificate. Calls without one fail with
// UNAUTHENTICATED before any handler runs. Health and reflection are exempt.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := s.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor is the streaming counterpart of UnaryInterceptor.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := s.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	if isPublic(method) {
		return ctx, nil
	}
	id, ok := spiffe.PeerID(ctx)
	if !ok {
		s.log.WarnContext(ctx, "call without a verified SPIFFE ID", slog.String("method", method))
		return nil, status.Error(codes.Unauthenticated, "a verified X.509-SVID is required")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	ctx = context.WithValue(ctx, requestIDKey{}, hex.EncodeToString(b[:]))
	return withCaller(ctx, id), nil
}

// isPublic reports whether method needs no caller identity: health checks and
// server reflection carry no secrets.
func isPublic(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.")
}
