package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/jwtissuer"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// startHTTP serves the JWKS, the JWT deny-list, metrics, health and, in dev
// mode only, the dev OIDC issuer.
func (m *Daemon) startHTTP(opts Options, reg *prometheus.Registry, issuers issuerSet, store *boltstore.Store) error {
	cfg := m.cfg.HTTP
	if cfg.Listen == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /.well-known/jwks.json", jwksHandler(issuers.jwt, issuers.transit, m.log))
	mux.Handle("GET /.well-known/writ-revoked-jwts.json", jwtissuer.RevokedHandler(func(ctx context.Context, now time.Time) ([]jwtissuer.Revoked, error) {
		denied, err := store.DeniedJTIs(ctx, now)
		out := make([]jwtissuer.Revoked, 0, len(denied))
		for _, d := range denied {
			out = append(out, jwtissuer.Revoked{JTI: d.JTI, Expires: d.Expires})
		}
		return out, err
	}, nil))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	if opts.DevOIDC != nil {
		mux.Handle("/dev-oidc/", opts.DevOIDC.Handler())
	}
	hl := opts.HTTPListener
	if hl == nil {
		var err error
		if hl, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
	}
	m.HTTPAddr = hl.Addr()
	m.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	go func() {
		var err error
		if cfg.CertFile != "" {
			err = m.httpServer.ServeTLS(hl, cfg.CertFile, cfg.KeyFile)
		} else {
			err = m.httpServer.Serve(hl)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("http server stopped", "error", err)
		}
	}()
	m.closer = append(m.closer, func() error { return m.httpServer.Close() })
	return nil
}

// startAdmin opens the admin listener, where people reach the admin API
// over TLS (the broker presents its SVID) with an OIDC ID token.
func (m *Daemon) startAdmin(opts Options, srv *broker.Server, src spiffe.Source) error {
	if m.cfg.Admin.Listen == "" {
		return nil
	}
	m.adminServer = grpc.NewServer(append(serverLimits(),
		grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(src))),
		grpc.ChainUnaryInterceptor(srv.PersonUnaryInterceptor()),
		grpc.ChainStreamInterceptor(srv.PersonStreamInterceptor()),
	)...)
	srv.RegisterAdmin(m.adminServer)
	healthpb.RegisterHealthServer(m.adminServer, m.health)
	al := opts.AdminListener
	if al == nil {
		var err error
		if al, err = net.Listen("tcp", m.cfg.Admin.Listen); err != nil {
			return fmt.Errorf("admin.listen: %w", err)
		}
	}
	m.AdminAddr = al.Addr()
	go func() {
		if err := m.adminServer.Serve(al); err != nil {
			m.log.Error("admin server stopped", "error", err)
		}
	}()
	return nil
}
