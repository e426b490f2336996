package broker

import (
	"context"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// JWTSVIDVerifier checks a JWT-SVID bearer token: its signature against the
// trust domain's JWT bundle, its expiry and its audience. It returns the
// workload's SPIFFE ID. Any error means Unauthenticated.
type JWTSVIDVerifier interface {
	VerifyJWTSVID(ctx context.Context, token string) (spiffeid.ID, error)
}

// JWTSVIDUnaryInterceptor authenticates calls on a listener for workloads
// behind TLS-terminating proxies, which cannot present an X.509-SVID: the
// caller sends a JWT-SVID as "authorization: Bearer <token>" metadata over
// server-authenticated TLS, and v checks it. The SPIFFE ID must also be in
// the policy's trust domain. The caller is then that workload, exactly as if
// it had connected with mutual TLS. Calls without a valid token fail with
// UNAUTHENTICATED before any handler runs; a nil v rejects every call. Health
// and reflection are exempt.
//
// Register only the workload service on such a listener (RegisterWorkload):
// a bearer token can be replayed until it expires, so operators use mutual
// TLS.
func (s *Server) JWTSVIDUnaryInterceptor(v JWTSVIDVerifier) grpc.UnaryServerInterceptor {
	return s.unary(s.jwtSVIDAuth(v))
}

// JWTSVIDStreamInterceptor is the streaming counterpart of
// JWTSVIDUnaryInterceptor.
func (s *Server) JWTSVIDStreamInterceptor(v JWTSVIDVerifier) grpc.StreamServerInterceptor {
	return s.stream(s.jwtSVIDAuth(v))
}

// RegisterWorkload registers only the workload service on r, for the
// JWT-SVID listener.
func (s *Server) RegisterWorkload(r grpc.ServiceRegistrar) {
	brokerv1.RegisterBrokerServiceServer(r, s)
}

func (s *Server) jwtSVIDAuth(v JWTSVIDVerifier) authFunc {
	return func(ctx context.Context, method string) (context.Context, error) {
		if isPublic(method) {
			return ctx, nil
		}
		if v == nil {
			return nil, status.Error(codes.Unauthenticated, "JWT-SVID authentication is not configured")
		}
		token, ok := bearerToken(ctx)
		switch {
		case !ok:
			return nil, status.Error(codes.Unauthenticated, "a JWT-SVID is required as \"authorization: Bearer <token>\"")
		case len(token) > maxTokenLen:
			return nil, status.Error(codes.Unauthenticated, "token too large")
		}
		id, err := v.VerifyJWTSVID(ctx, token)
		if err != nil {
			s.log.InfoContext(ctx, "rejected JWT-SVID", slog.String("method", method), slog.Any("error", err))
			return nil, status.Error(codes.Unauthenticated, "invalid or expired JWT-SVID")
		}
		if td := s.policy.Load().TrustDomain; id.TrustDomain().Name() != td {
			s.log.InfoContext(ctx, "rejected JWT-SVID from a foreign trust domain",
				slog.String("method", method), slog.String("spiffe_id", id.String()), slog.String("trust_domain", td))
			return nil, status.Error(codes.Unauthenticated, "JWT-SVID from a foreign trust domain")
		}
		return withCaller(withRequestID(ctx), caller{workload: id}), nil
	}
}
