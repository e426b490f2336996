package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/oidc"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// Daemon is a running broker: the composition root, the only place adapters
// meet. cmd/writd (serve and dev) and cmd/writ-bench build it with New.
type Daemon struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	life *lifecycle

	health *health.Server
	ready  readiness
	store  *boltstore.Store
	// storeFailed wakes the store recovery job (see recoverStore).
	storeFailed  chan struct{}
	checkpointer *checkpoint.Checkpointer
	ledgerKey    string // the ledger's verifier key

	shutdownOnce sync.Once
	shutdownErr  error

	// GRPCAddr, AdminAddr, HTTPAddr and JWTSVIDAddr are the bound
	// addresses (useful with port 0); nil for a listener not configured.
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
	// cfg.Admin.Listen. The daemon closes them, also when New fails.
	GRPCListener, HTTPListener, AdminListener net.Listener
	// DevOIDC is the dev-only OIDC issuer, served under /dev-oidc/. Only
	// writd dev sets it.
	DevOIDC *oidc.DevIssuer
	// Ledger replaces the durable ledger (audit.Log over the store). Only
	// writ-bench sets it, for its no-ledger upper bound; production never.
	Ledger broker.Ledger
	// NoCheckpoints leaves the ledger checkpointer out: no checkpoints are
	// signed and no witness is fed (the Merkle tree hashes are still
	// written by every append). Only writ-bench sets it, as the
	// "checkpoints off" baseline; production never.
	NoCheckpoints bool
	// Hangup delivers SIGHUP. Until configuration reload exists, Run logs
	// each one and carries on; without it a SIGHUP would kill the process.
	Hangup <-chan os.Signal

	// storeOpenFile opens the database file (tests inject I/O faults);
	// nil means os.OpenFile.
	storeOpenFile func(string, int, os.FileMode) (*os.File, error)
	// storeRetry is how often a failed store is reopened; zero means
	// defaultStoreRetry.
	storeRetry time.Duration
}

// Intervals of the background jobs.
const (
	expiryInterval     = 5 * time.Second
	revocationInterval = 5 * time.Second
)

// components are the parts New builds, handed to the steps that wire them.
type components struct {
	pol       *approval.Policy
	td        spiffeid.TrustDomain
	operators []spiffeid.ID
	store     *boltstore.Store
	ledger    broker.Ledger
	src       spiffe.Source
	reg       *prometheus.Registry
	issuers   issuerSet
	approvals *approval.Service
	revoker   *revoke.Revoker
	notifier  broker.Notifier
	people    broker.PersonVerifier
	srv       *broker.Server
}

// New builds every component from cfg, in order, and starts it: the store,
// the SVID source, the issuers, approvals, the revoker and the notifier, the
// HTTP listener (first: in dev mode the OIDC verifier fetches the dev
// issuer's keys from it), the OIDC verifier, the broker, the background
// jobs and the gRPC listeners. The configuration was validated before
// (LoadConfig or Config.Validate). If any step fails, New stops and closes
// everything it started, in reverse, and returns the error. The caller must
// call Shutdown (Run does).
func New(ctx context.Context, cfg Config, opts Options) (_ *Daemon, err error) {
	if opts.LogOutput == nil {
		opts.LogOutput = io.Discard
	}
	d := &Daemon{cfg: cfg, opts: opts, log: newLogger(cfg.Log, opts.LogOutput), life: newLifecycle(ctx), health: health.NewServer()}
	for _, l := range []net.Listener{opts.GRPCListener, opts.HTTPListener, opts.AdminListener} {
		if l != nil {
			d.life.addCloser("listener "+l.Addr().String(), l.Close)
		}
	}
	defer func() {
		if err != nil {
			if serr := d.Shutdown(); serr != nil {
				d.log.Error("stop after failed start", "error", serr)
			}
		}
	}()
	c, err := d.build(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.startHTTP(c); err != nil {
		return nil, err
	}
	if err := d.buildBroker(ctx, c); err != nil {
		return nil, err
	}
	d.reconcileAtStart(ctx, c.srv)
	d.startJobs(c)
	if err := d.startWorkload(c); err != nil {
		return nil, err
	}
	if err := d.startAdmin(c); err != nil {
		return nil, err
	}
	if err := d.startJWTSVID(ctx, c); err != nil {
		return nil, err
	}

	d.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	d.ready.setStarted()
	d.log.Info("writd serving",
		slog.String("grpc", d.GRPCAddr.String()),
		slog.Any("admin", d.AdminAddr),
		slog.Any("http", d.HTTPAddr),
		slog.Any("jwt_svid", d.JWTSVIDAddr),
		slog.String("trust_domain", c.td.Name()),
		slog.Int("entitlements", len(c.pol.Entitlements)),
		slog.String("data_dir", cfg.DataDir))
	return d, nil
}

// build opens the store and builds the components nothing reaches yet.
func (d *Daemon) build(ctx context.Context) (*components, error) {
	cfg := d.cfg
	c := &components{}
	var err error
	if c.pol, err = policy.Load(cfg.Policy); err != nil {
		return nil, err
	}
	if c.td, err = spiffeid.TrustDomainFromString(c.pol.TrustDomain); err != nil {
		return nil, fmt.Errorf("policy trust_domain: %w", err)
	}
	for _, o := range cfg.Admin.Operators {
		id, err := spiffeid.FromString(o)
		if err != nil {
			return nil, fmt.Errorf("admin.operators: %q: %w", o, err)
		}
		c.operators = append(c.operators, id)
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	d.storeFailed = make(chan struct{}, 1)
	if c.store, err = boltstore.Open(filepath.Join(cfg.DataDir, "writ.db"), boltstore.Options{
		OpenFile:  d.opts.storeOpenFile,
		OnFailure: d.onStoreFailure,
	}); err != nil {
		return nil, err
	}
	d.store = c.store
	d.ready.ledger = c.store.Err
	d.life.addCloser("store", c.store.Close)
	c.ledger = d.opts.Ledger
	if c.ledger == nil {
		if c.ledger, err = audit.New(audit.Config{Store: c.store}); err != nil {
			return nil, err
		}
	}

	if c.src, err = d.svidSource(ctx); err != nil {
		return nil, err
	}
	d.life.addCloser("svid source", c.src.Close)
	d.ready.svid = c.src
	c.reg = prometheus.NewRegistry()
	if err := c.reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := c.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if !d.opts.NoCheckpoints {
		if err := d.startCheckpointer(ctx, c.store, c.reg); err != nil {
			return nil, err
		}
	}

	if c.issuers, err = d.buildIssuers(ctx, c.pol, c.store, c.src, c.reg); err != nil {
		return nil, err
	}
	if c.approvals, err = approval.NewService(approval.ServiceConfig{Store: c.store, BreakGlass: c.store, Policy: func() *approval.Policy { return c.pol }}); err != nil {
		return nil, err
	}
	if c.revoker, err = d.newRevoker(c.issuers.byKind, c.store, c.ledger); err != nil {
		return nil, err
	}
	if c.notifier, err = d.newNotifier(); err != nil {
		return nil, err
	}
	return c, nil
}

// buildBroker builds the OIDC verifier (after the HTTP listener: in dev
// mode it fetches the dev issuer's keys from it) and the broker.
func (d *Daemon) buildBroker(ctx context.Context, c *components) error {
	if o := d.cfg.OIDC; o != nil {
		vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		v, err := oidc.New(vctx, oidc.Config{Issuer: o.Issuer, Audience: o.Audience, JWKSURL: o.JWKSURL,
			GroupsClaim: o.GroupsClaim, Algorithms: o.Algorithms, Logger: d.log})
		cancel()
		if err != nil {
			return fmt.Errorf("oidc: %w", err)
		}
		d.life.addCloser("oidc verifier", v.Close)
		c.people = personVerifier{v}
	}
	pol := c.pol
	srv, err := broker.New(broker.Config{
		Policy:        pol,
		Issuers:       c.issuers.byKind,
		Ledger:        c.ledger,
		Operators:     c.operators,
		AuditorGroups: d.cfg.Admin.AuditorGroups,
		Limits:        d.cfg.Limits.broker(),
		Approvals:     c.approvals,
		People:        c.people,
		Revoker:       c.revoker,
		Commit:        c.store,
		// Both JWT issuers revoke through the store's deny-list.
		DenyListKinds: []approval.CredentialKind{approval.KindJWT, approval.KindVaultTransitJWT},
		Notifier:      c.notifier,
		Grants:        c.store,
		Records:       c.store,
		Intents:       c.store,
		Metrics:       broker.NewMetrics(c.reg, func(name string) bool { _, ok := pol.Entitlements[name]; return ok }),
		Logger:        d.log,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", d.cfg.Policy, err)
	}
	// The policy version goes into the ledger before the first decision
	// that cites it.
	if _, err := srv.RecordPolicy(ctx); err != nil {
		return fmt.Errorf("record policy %s in the ledger: %w", d.cfg.Policy, err)
	}
	c.srv = srv
	return nil
}

// startWorkload opens the workload listener: mutual TLS with SVIDs of the
// policy's trust domain.
func (d *Daemon) startWorkload(c *components) error {
	gs := d.newGRPCServer(spiffe.ServerCredentials(c.src, tlsconfig.AuthorizeMemberOf(c.td), spiffe.WithPanicHandler(c.srv.HandshakePanic)),
		c.srv.UnaryInterceptor(), c.srv.StreamInterceptor())
	c.srv.Register(gs)
	healthpb.RegisterHealthServer(gs, d.health)
	reflection.Register(gs)
	lis := d.opts.GRPCListener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", d.cfg.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	d.GRPCAddr = lis.Addr()
	d.life.serveGRPC("grpc", gs, lis)
	return nil
}

// Store returns the daemon's store, for tools in this module that read the
// ledger (writ-bench verifies it after a run). It is closed by Shutdown.
func (d *Daemon) Store() *boltstore.Store { return d.store }

// Run serves until ctx is done or a component fails in a way the daemon
// cannot continue from, then shuts down. It returns nil after a requested
// stop that went cleanly, else the failure and any shutdown errors. SIGHUP
// (Options.Hangup) is logged and ignored: reloading the configuration is
// not supported yet.
func (d *Daemon) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping", "cause", context.Cause(ctx))
			return d.Shutdown()
		case err := <-d.life.fatal:
			d.log.Error("stopping after a failure", "error", err)
			return errors.Join(err, d.Shutdown())
		case sig := <-d.opts.Hangup:
			d.log.Warn("ignoring signal: configuration reload is not supported; restart writd to apply changes", "signal", fmt.Sprint(sig))
		}
	}
}

// Shutdown stops the daemon in reverse order of starting: it marks it not
// ready, ends open streams and stops the listeners (in-flight calls finish,
// bounded by the configured timeout), cancels the background jobs and
// awaits them, then closes the clients and, last, the store. Nothing is
// half-written: the ledger closes only after the last grant has been
// recorded. It returns every error met, and the same on later calls.
func (d *Daemon) Shutdown() error {
	d.shutdownOnce.Do(func() {
		d.ready.setStopping()
		d.health.Shutdown()
		timeout := d.cfg.ShutdownTimeout
		if timeout <= 0 {
			timeout = DefaultConfig().ShutdownTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		d.shutdownErr = d.life.stop(ctx)
		if d.shutdownErr != nil {
			d.log.Error("writd stopped with errors", "error", d.shutdownErr)
		} else {
			d.log.Info("writd stopped")
		}
	})
	return d.shutdownErr
}

// NotifyHangup returns a channel that receives SIGHUP, for Options.Hangup,
// and a function that stops the delivery. Call it before New so that a
// SIGHUP during start-up does not kill the process.
func NotifyHangup() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
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
