package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/writ-dev/writ/internal/jwtissuer"
	"github.com/writ-dev/writ/internal/spiffe"
)

// newGRPCServer builds a gRPC server with the options every listener
// shares: the configured transport limits (broker.Limits.ServerOptions), then the interceptors in order (the
// shutdown drain first, then the listener's own authentication). Add a
// server option or an interceptor for every listener here.
func (d *Daemon) newGRPCServer(creds credentials.TransportCredentials, unary grpc.UnaryServerInterceptor, stream grpc.StreamServerInterceptor) *grpc.Server {
	return grpc.NewServer(append(d.cfg.Limits.broker().ServerOptions(),
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(d.life.drainStreams(), stream),
	)...)
}

// routes registers every HTTP handler: the JWKS, the JWT deny-list,
// metrics, liveness and readiness and, in dev mode only, the dev OIDC
// issuer. Add an HTTP endpoint here.
func (d *Daemon) routes(mux *http.ServeMux, c *components) {
	mux.Handle("GET /.well-known/jwks.json", jwksHandler(c.issuers.jwt, c.issuers.transit, d.log))
	store := c.store
	mux.Handle("GET /.well-known/writ-revoked-jwts.json", jwtissuer.RevokedHandler(func(ctx context.Context, now time.Time) ([]jwtissuer.Revoked, error) {
		denied, err := store.DeniedJTIs(ctx, now)
		out := make([]jwtissuer.Revoked, 0, len(denied))
		for _, d := range denied {
			out = append(out, jwtissuer.Revoked{JTI: d.JTI, Expires: d.Expires})
		}
		return out, err
	}, nil))
	d.mountLedger(mux, c.store)
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", d.ready.liveness)
	mux.HandleFunc("GET /readyz", d.ready.readiness)
	if d.opts.DevOIDC != nil {
		mux.Handle("/dev-oidc/", d.opts.DevOIDC.Handler())
	}
}

// startHTTP opens the HTTP listener when configured and serves routes.
func (d *Daemon) startHTTP(c *components) error {
	cfg := d.cfg.HTTP
	if cfg.Listen == "" {
		return nil
	}
	mux := http.NewServeMux()
	d.routes(mux, c)
	hl := d.opts.HTTPListener
	if hl == nil {
		var err error
		if hl, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
	}
	d.HTTPAddr = hl.Addr()
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	d.life.serveHTTP("http", hs, hl, cfg.CertFile, cfg.KeyFile)
	return nil
}

// startAdmin opens the admin listener, where people reach the admin API
// over TLS (the broker presents its SVID) with an OIDC ID token.
func (d *Daemon) startAdmin(c *components) error {
	if d.cfg.Admin.Listen == "" {
		return nil
	}
	gs := d.newGRPCServer(spiffe.ServerTLSCredentials(c.src, spiffe.WithPanicHandler(c.srv.HandshakePanic)),
		c.srv.PersonUnaryInterceptor(), c.srv.PersonStreamInterceptor())
	c.srv.RegisterAdmin(gs)
	healthpb.RegisterHealthServer(gs, d.health)
	al := d.opts.AdminListener
	if al == nil {
		var err error
		if al, err = net.Listen("tcp", d.cfg.Admin.Listen); err != nil {
			return fmt.Errorf("admin.listen: %w", err)
		}
	}
	d.AdminAddr = al.Addr()
	d.life.serveGRPC("admin", gs, al)
	return nil
}
