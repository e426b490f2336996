package daemon

import (
	"context"
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
	"github.com/writ-dev/writ/internal/oidc"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// Daemon is a running broker: the composition root, the only place adapters
// meet. cmd/writd (serve and dev) and cmd/writ-bench build it with New.
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	closer []func() error

	grpcServer    *grpc.Server
	adminServer   *grpc.Server
	jwtSVIDServer *grpc.Server
	httpServer    *http.Server
	health        *health.Server
	store         *boltstore.Store

	// GRPCAddr and HTTPAddr are the bound addresses (useful with port 0).
	GRPCAddr    net.Addr
	AdminAddr   net.Addr
	HTTPAddr    net.Addr
	JWTSVIDAddr net.Addr
}

// Options are what New takes besides the configuration file: where logs
// go, listeners bound beforehand (writd dev binds them first so that port 0
// works and URLs are right), the dev-only OIDC issuer, and the benchmark's
// ledger override. The zero value is production.
type Options struct {
	// LogOutput receives the log. Nil means io.Discard.
	LogOutput io.Writer
	// GRPCListener, HTTPListener and AdminListener, when set, are used
	// instead of listening on cfg.Listen, cfg.HTTP.Listen and
	// cfg.Admin.Listen. The daemon closes them.
	GRPCListener, HTTPListener, AdminListener net.Listener
	// DevOIDC is the dev-only OIDC issuer, served under /dev-oidc/. Only
	// writd dev sets it.
	DevOIDC *oidc.DevIssuer
	// Ledger replaces the durable ledger (audit.Log over the store). Only
	// writ-bench sets it, for its no-ledger upper bound; production never.
	Ledger broker.Ledger
}

// Intervals of the background jobs.
const (
	expiryInterval     = 5 * time.Second
	revocationInterval = 5 * time.Second
)

// New builds every component from cfg, opens the listeners and starts
// serving. The configuration was validated before (LoadConfig or
// Config.Validate). If any step fails, New closes what it opened and
// returns the error. The caller must call Shutdown.
func New(ctx context.Context, cfg Config, opts Options) (_ *Daemon, err error) {
	if opts.LogOutput == nil {
		opts.LogOutput = io.Discard
	}
	m := &Daemon{cfg: cfg, log: newLogger(cfg.Log, opts.LogOutput)}
	defer func() {
		if err != nil {
			m.closeAll()
		}
	}()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	m.closer = append(m.closer, func() error { stopBG(); return nil })

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
	m.store = store
	m.closer = append(m.closer, store.Close)
	var ledger broker.Ledger = opts.Ledger
	if ledger == nil {
		if ledger, err = audit.New(audit.Config{Store: store}); err != nil {
			return nil, err
		}
	}

	src, err := m.svidSource(ctx)
	if err != nil {
		return nil, err
	}
	m.closer = append(m.closer, src.Close)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	issuers, err := m.buildIssuers(ctx, pol, store, src, reg)
	if err != nil {
		return nil, err
	}

	approvals, err := approval.NewService(approval.ServiceConfig{Store: store, BreakGlass: store, Policy: func() *approval.Policy { return pol }})
	if err != nil {
		return nil, err
	}
	revoker, err := m.newRevoker(issuers.byKind, store, ledger)
	if err != nil {
		return nil, err
	}

	notifier, err := m.newNotifier()
	if err != nil {
		return nil, err
	}

	// The HTTP listener comes first: in dev mode the OIDC verifier fetches
	// the dev issuer's keys from it.
	if err := m.startHTTP(opts, reg, issuers, store); err != nil {
		return nil, err
	}

	var people broker.PersonVerifier
	if o := cfg.OIDC; o != nil {
		vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		v, err := oidc.New(vctx, oidc.Config{Issuer: o.Issuer, Audience: o.Audience, JWKSURL: o.JWKSURL,
			GroupsClaim: o.GroupsClaim, Algorithms: o.Algorithms, Logger: m.log})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("oidc: %w", err)
		}
		m.closer = append(m.closer, v.Close)
		people = personVerifier{v}
	}

	srv, err := broker.New(broker.Config{
		Policy:    pol,
		Issuers:   issuers.byKind,
		Ledger:    ledger,
		Operators: operators,
		Approvals: approvals,
		People:    people,
		Revoker:   revoker,
		Commit:    store,
		// Both JWT issuers revoke through the store's deny-list.
		DenyListKinds: []approval.CredentialKind{approval.KindJWT, approval.KindVaultTransitJWT},
		Notifier:      notifier,
		Grants:        store,
		Intents:       store,
		Metrics:       broker.NewMetrics(reg, func(name string) bool { _, ok := pol.Entitlements[name]; return ok }),
		Logger:        m.log,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Policy, err)
	}
	// The policy version goes into the ledger before the first decision
	// that cites it.
	if _, err := srv.RecordPolicy(ctx); err != nil {
		return nil, fmt.Errorf("record policy %s in the ledger: %w", cfg.Policy, err)
	}

	m.reconcileAtStart(ctx, srv)

	m.grpcServer = grpc.NewServer(append(serverLimits(),
		grpc.Creds(spiffe.ServerCredentials(src, tlsconfig.AuthorizeMemberOf(td))),
		grpc.ChainUnaryInterceptor(srv.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(srv.StreamInterceptor()),
	)...)
	srv.Register(m.grpcServer)
	m.health = health.NewServer()
	healthpb.RegisterHealthServer(m.grpcServer, m.health)
	reflection.Register(m.grpcServer)
	lis := opts.GRPCListener
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

	if err := m.startAdmin(opts, srv, src); err != nil {
		return nil, err
	}

	if err := m.startJWTSVID(ctx, srv, src); err != nil {
		return nil, err
	}

	go srv.RunExpiry(bg, expiryInterval)
	go revoker.Run(bg, revocationInterval)
	go srv.RunReconciler(bg, reconcileInterval)

	m.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	m.log.Info("writd serving",
		slog.String("grpc", m.GRPCAddr.String()),
		slog.Any("admin", m.AdminAddr),
		slog.Any("http", m.HTTPAddr),
		slog.Any("jwt_svid", m.JWTSVIDAddr),
		slog.String("trust_domain", td.Name()),
		slog.Int("entitlements", len(pol.Entitlements)),
		slog.String("data_dir", cfg.DataDir))
	return m, nil
}

// Store returns the daemon's store, for tools in this module that read the
// ledger (writ-bench verifies it after a run). It is closed by Shutdown.
func (m *Daemon) Store() *boltstore.Store { return m.store }

// serverLimits bound what one client can take (reliability case T39).
func serverLimits() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(64 << 10),
		grpc.MaxConcurrentStreams(256),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute}),
	}
}

// personVerifier adapts the OIDC verifier to what the broker consumes.
type personVerifier struct{ v *oidc.Verifier }

func (p personVerifier) VerifyPerson(ctx context.Context, token string) (broker.Person, error) {
	person, err := p.v.Verify(ctx, token)
	if err != nil {
		return broker.Person{}, err
	}
	return broker.Person{Principal: person.Principal(), Groups: person.Groups, Expires: person.Expires}, nil
}

func (m *Daemon) svidSource(ctx context.Context) (spiffe.Source, error) {
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
func (m *Daemon) Shutdown() {
	m.health.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ShutdownTimeout)
	defer cancel()
	for _, gs := range []*grpc.Server{m.grpcServer, m.adminServer, m.jwtSVIDServer} {
		if gs == nil {
			continue
		}
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			m.log.Warn("graceful stop timed out; cancelling in-flight calls")
			gs.Stop()
			<-done
		}
	}
	if m.httpServer != nil {
		_ = m.httpServer.Shutdown(ctx)
	}
	m.closeAll()
	m.log.Info("writd stopped")
}

func (m *Daemon) closeAll() {
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
