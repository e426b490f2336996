package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/spiffe"
)

// Person is a human authenticated by an OIDC ID token.
type Person struct {
	// Principal is "oidc:<issuer>#<subject>".
	Principal approval.Principal
	// Groups come from the token's groups claim.
	Groups []string
	// Expires is when the token stops being accepted.
	Expires time.Time
}

// PersonVerifier checks a bearer ID token. Any error means Unauthenticated.
type PersonVerifier interface {
	VerifyPerson(ctx context.Context, token string) (Person, error)
}

// caller is who is calling: a workload (by SVID) or a person (by ID token).
type caller struct {
	workload spiffeid.ID
	person   *Person
	// bearer marks a workload authenticated by a JWT-SVID, which can be
	// replayed until it expires: such a caller is never an operator.
	bearer bool
	// operator and auditor are the caller's roles, set by authorize.
	operator bool
	auditor  bool
}

// seesAll reports whether c may see every request and break-glass use:
// operators and auditors.
func (c caller) seesAll() bool { return c.operator || c.auditor }

func (c caller) principal() approval.Principal {
	if c.person != nil {
		return c.person.Principal
	}
	return approval.Principal(c.workload.String())
}

type callerKey struct{}

type requestIDKey struct{}

func withCaller(ctx context.Context, c caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// callerFrom returns the authenticated caller set by an interceptor.
func callerFrom(ctx context.Context) (caller, bool) {
	c, ok := ctx.Value(callerKey{}).(caller)
	return c, ok && (c.person != nil || !c.workload.IsZero())
}

// workloadFrom returns the calling workload's SPIFFE ID.
func workloadFrom(ctx context.Context) (spiffeid.ID, bool) {
	c, ok := callerFrom(ctx)
	return c.workload, ok && !c.workload.IsZero()
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// UnaryInterceptor authenticates and authorizes calls on the workload
// listener: the caller's SPIFFE ID comes only from the verified peer
// certificate, and the method's rule (see RuleFor) must allow it. Calls that
// fail either never reach a handler. Public methods (health, reflection)
// need no identity.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return s.unary(s.authenticateWorkload)
}

// StreamInterceptor is the streaming counterpart of UnaryInterceptor.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return s.stream(s.authenticateWorkload)
}

// PersonUnaryInterceptor authenticates calls on the admin listener with an
// OIDC ID token in "authorization: Bearer <token>" metadata, and authorizes
// them like UnaryInterceptor.
func (s *Server) PersonUnaryInterceptor() grpc.UnaryServerInterceptor {
	return s.unary(s.authenticatePerson)
}

// PersonStreamInterceptor is the streaming counterpart of PersonUnaryInterceptor.
func (s *Server) PersonStreamInterceptor() grpc.StreamServerInterceptor {
	return s.stream(s.authenticatePerson)
}

// authFunc authenticates the caller of method the way one listener does and
// returns ctx carrying the caller.
type authFunc func(ctx context.Context, method string) (context.Context, error)

// unary authenticates with auth, refuses requests carrying unsafe text
// (checkText, T43) and recovers a panic anywhere below it (authentication,
// later interceptors, the handler): that call fails with INTERNAL, the
// panic is logged, counted and, if the caller is known, recorded, and the
// server keeps serving.
func (s *Server) unary(auth authFunc) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		callCtx := ctx
		defer func() {
			if r := recover(); r != nil {
				resp, err = nil, s.recoverCall(callCtx, info.FullMethod, r)
			}
		}()
		ctx, err = s.admit(ctx, info.FullMethod, auth)
		if err != nil {
			return nil, err
		}
		callCtx = ctx
		if err := checkText(req); err != nil {
			return nil, s.toStatus(ctx, err)
		}
		return handler(ctx, req)
	}
}

// stream is the streaming counterpart of unary; every message received is
// checked with checkText.
func (s *Server) stream(auth authFunc) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		callCtx := ss.Context()
		defer func() {
			if r := recover(); r != nil {
				err = s.recoverCall(callCtx, info.FullMethod, r)
			}
		}()
		ctx, err := s.admit(ss.Context(), info.FullMethod, auth)
		if err != nil {
			return err
		}
		callCtx = ctx
		return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx, s: s})
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
	s   *Server
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// RecvMsg receives m and refuses it if it carries unsafe text.
func (w *wrappedStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := checkText(m); err != nil {
		return w.s.toStatus(w.ctx, err)
	}
	return nil
}

func (s *Server) authenticateWorkload(ctx context.Context, method string) (context.Context, error) {
	id, ok := spiffe.PeerID(ctx)
	if !ok {
		s.rejected.log(ctx, "call without a verified SPIFFE ID", method, nil)
		return nil, status.Error(codes.Unauthenticated, "a verified X.509-SVID is required")
	}
	return withCaller(withRequestID(ctx), caller{workload: id}), nil
}

// maxTokenLen bounds a bearer token before it is parsed (T37).
const maxTokenLen = 8 << 10

func (s *Server) authenticatePerson(ctx context.Context, method string) (context.Context, error) {
	if s.people == nil {
		return nil, status.Error(codes.Unauthenticated, "people cannot sign in: no OIDC issuer is configured on this broker")
	}
	token, ok := bearerToken(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "an OIDC ID token is required (authorization: Bearer …): run `writ login`")
	}
	if len(token) > maxTokenLen {
		return nil, status.Error(codes.Unauthenticated, "token too large")
	}
	p, err := s.people.VerifyPerson(ctx, token)
	if err != nil {
		s.rejected.log(ctx, "rejected ID token", method, err)
		return nil, status.Error(codes.Unauthenticated, "invalid or expired ID token: run `writ login` again")
	}
	return withCaller(withRequestID(ctx), caller{person: &p}), nil
}

// bearerToken returns the token of the one "authorization: Bearer <token>"
// metadata entry in ctx. It reports false if there is none, more than one,
// another scheme or an empty token.
func bearerToken(ctx context.Context) (string, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return "", false
	}
	v := md.Get("authorization")
	if len(v) != 1 {
		return "", false
	}
	token, ok := strings.CutPrefix(v[0], "Bearer ")
	return token, ok && token != ""
}

func withRequestID(ctx context.Context) context.Context {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return context.WithValue(ctx, requestIDKey{}, hex.EncodeToString(b[:]))
}
