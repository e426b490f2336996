package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/jwtissuer"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/vault"
)

// Main is a running broker: the composition root, the only place adapters meet.
type Main struct {
	cfg    Config
	log    *slog.Logger
	closer []func() error

	grpcServer *grpc.Server
	httpServer *http.Server
	health     *health.Server

	// GRPCAddr and HTTPAddr are the bound addresses (useful with port 0).
	GRPCAddr net.Addr
	HTTPAddr net.Addr
}

// Start builds every component from cfg and opens the listeners. Everything
// that can be checked is checked before the first listener opens.
func Start(ctx context.Context, cfg Config, logOut io.Writer) (*Main, error) {
	return start(ctx, cfg, logOut, nil, nil)
}

// start is Start with optional listeners already open (writd dev binds first
// so that port 0 works and the JWT issuer URL is right).
func start(ctx context.Context, cfg Config, logOut io.Writer, grpcLis, httpLis net.Listener) (_ *Main, err error) {
	m := &Main{cfg: cfg, log: newLogger(cfg.Log, logOut)}
	defer func() {
		if err != nil {
			m.closeAll()
		}
	}()

	pol, err := policy.Load(cfg.Policy)
	if err != nil {
		return nil, err
	}
	td, err := spiffeid.TrustDomainFromString(pol.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("policy trust_domain: %w", err)
	}
	operators := make([]spiffeid.ID, 0, len(cfg.Admin.Operators))
	for _, o := range cfg.Admin.Operators {
		id, err := spiffeid.FromString(o)
		if err != nil {
			return nil, fmt.Errorf("admin.operators: %q: %w", o, err)
		}
		operators = append(operators, id)
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	store, err := boltstore.Open(filepath.Join(cfg.DataDir, "writ.db"), boltstore.Options{})
	if err != nil {
		return nil, err
	}
	m.closer = append(m.closer, store.Close)
	ledger, err := audit.New(audit.Config{Store: store})
	if err != nil {
		return nil, err
	}

	issuers := map[approval.CredentialKind]broker.Issuer{}
	jwtIss, err := jwtissuer.New(jwtissuer.Config{
		KeyFile:   filepath.Join(cfg.DataDir, "jwt-signing-key.pem"),
		Algorithm: cfg.JWT.Algorithm,
		Issuer:    cfg.JWT.Issuer,
		Logger:    m.log,
	})
	if err != nil {
		return nil, err
	}
	issuers[approval.KindJWT] = jwtIss
	if cfg.Vault != nil {
		token, err := readSecretFile(cfg.Vault.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("vault.token_file: %w", err)
		}
		v, err := vault.New(vault.Config{
			Address:    cfg.Vault.Address,
			Token:      token,
			CACertFile: cfg.Vault.CACertFile,
			Timeout:    cfg.Vault.Timeout,
			Logger:     m.log,
		})
		if err != nil {
			return nil, err
		}
		issuers[approval.KindVaultToken] = v
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := broker.New(broker.Config{
		Policy:    pol,
		Issuers:   issuers,
		Ledger:    ledger,
		Operators: operators,
		Metrics:   broker.NewMetrics(reg, func(name string) bool { _, ok := pol.Entitlements[name]; return ok }),
		Logger:    m.log,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Policy, err)
	}

	src, err := m.svidSource(ctx)
	if err != nil {
		return nil, err
	}
	m.closer = append(m.closer, src.Close)

	m.grpcServer = grpc.NewServer(
		grpc.Creds(spiffe.ServerCredentials(src, tlsconfig.AuthorizeMemberOf(td))),
		grpc.ChainUnaryInterceptor(srv.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(srv.StreamInterceptor()),
		grpc.MaxRecvMsgSize(64<<10),
		grpc.MaxConcurrentStreams(256),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute}),
	)
	srv.Register(m.grpcServer)
	m.health = health.NewServer()
	healthpb.RegisterHealthServer(m.grpcServer, m.health)
	reflection.Register(m.grpcServer)

	lis := grpcLis
	if lis == nil {
		if lis, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	m.GRPCAddr = lis.Addr()
	go func() {
		if err := m.grpcServer.Serve(lis); err != nil {
			m.log.Error("grpc server stopped", "error", err)
		}
	}()

	if cfg.HTTP.Listen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /.well-known/jwks.json", jwtIss.Handler())
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
		hl := httpLis
		if hl == nil {
			if hl, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
				_ = lis.Close()
				return nil, fmt.Errorf("http.listen: %w", err)
			}
		}
		m.HTTPAddr = hl.Addr()
		m.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
		go func() {
			var err error
			if cfg.HTTP.CertFile != "" {
				err = m.httpServer.ServeTLS(hl, cfg.HTTP.CertFile, cfg.HTTP.KeyFile)
			} else {
				err = m.httpServer.Serve(hl)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("http server stopped", "error", err)
			}
		}()
	}
	m.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	m.log.Info("writd serving",
		slog.String("grpc", m.GRPCAddr.String()),
		slog.Any("http", m.HTTPAddr),
		slog.String("trust_domain", td.Name()),
		slog.Int("entitlements", len(pol.Entitlements)),
		slog.String("data_dir", cfg.DataDir))
	return m, nil
}

func (m *Main) svidSource(ctx context.Context) (spiffe.Source, error) {
	if s := m.cfg.SVID.WorkloadAPISocket; s != "" {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		src, err := spiffe.NewWorkloadSource(wctx, s)
		if err != nil {
			return nil, fmt.Errorf("svid.workload_api_socket %s: %w", s, err)
		}
		return src, nil
	}
	src, err := spiffe.NewFileSource(ctx, spiffe.FileConfig{
		CertFile:   m.cfg.SVID.CertFile,
		KeyFile:    m.cfg.SVID.KeyFile,
		BundleFile: m.cfg.SVID.BundleFile,
		Interval:   m.cfg.SVID.ReloadInterval,
		Logger:     m.log,
	})
	if err != nil {
		return nil, fmt.Errorf("svid files: %w", err)
	}
	return src, nil
}

// Shutdown stops accepting work, lets in-flight grants finish (bounded by
// the configured timeout), then closes the stores. Nothing is half-written:
// the ledger closes only after the last grant has been recorded.
func (m *Main) Shutdown() {
	m.health.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() { m.grpcServer.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		m.log.Warn("graceful stop timed out; cancelling in-flight calls")
		m.grpcServer.Stop()
		<-done
	}
	if m.httpServer != nil {
		_ = m.httpServer.Shutdown(ctx)
	}
	m.closeAll()
	m.log.Info("writd stopped")
}

func (m *Main) closeAll() {
	for i := len(m.closer) - 1; i >= 0; i-- {
		if err := m.closer[i](); err != nil {
			m.log.Error("close", "error", err)
		}
	}
	m.closer = nil
}

func newLogger(c LogConfig, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(out, opts))
	}
	return slog.New(slog.NewJSONHandler(out, opts))
}

// readSecretFile reads a token file, refusing one readable by others.
func readSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by group or others; chmod 600 it", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}
