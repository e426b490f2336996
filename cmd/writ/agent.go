package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/writ-dev/writ/broker/client"
	"github.com/writ-dev/writ/internal/clock"
	"github.com/writ-dev/writ/internal/spiffe"
)

func agentCmd() *cobra.Command {
	var (
		configPath string
		opts       = defaultAgentOptions()
		logLevel   string
		logFormat  string
	)
	cmd := &cobra.Command{
		Use:   "agent --config agent.yaml",
		Short: "Keep credentials written to files for a workload that cannot use the Go client",
		Long: `agent is a sidecar: it obtains the credentials listed in its config file as this
workload, writes each to a file (atomically, mode 0600) through a Go text/template,
runs an optional command after each write, and renews each credential once a fraction of
its lifetime has passed (renew_fraction, default 0.66, ±10% jitter). On errors it retries
with capped exponential backoff and leaves the last file in place; a credential that
expires before it can be renewed stays in its file and is logged at error level.

Templates see .GrantID .Entitlement .Kind .Secret .Data (a dynamic secret's fields, e.g.
{{ .Data.username }}) .Reference .IssuedAt .ExpiresAt .BreakGlass; the default is
"{{ .Secret }}". Commands get WRIT_ENTITLEMENT,
WRIT_CREDENTIAL_PATH, WRIT_REFERENCE and WRIT_EXPIRES_AT, never the secret.

The agent exits non-zero if a credential cannot be obtained at start: at once when the
broker refuses it for good (permission denied, no such entitlement, invalid request),
or after --initial-timeout of other failures. SIGTERM stops it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return fmt.Errorf("--config is required: %w", errUsage)
			}
			if opts.initialTimeout <= 0 {
				return fmt.Errorf("--initial-timeout must be positive: %w", errUsage)
			}
			log, err := newAgentLogger(cmd.ErrOrStderr(), logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg, err := loadAgentConfig(configPath)
			if err != nil {
				return err
			}
			opts.log = log
			return runAgent(cmd.Context(), cfg, opts)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "agent configuration file (required)")
	cmd.Flags().DurationVar(&opts.initialTimeout, "initial-timeout", opts.initialTimeout, "exit non-zero if a credential cannot be obtained for this long after start")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&logFormat, "log-format", "json", "json or text")
	return cmd
}

func newAgentLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error: %w", level, errUsage)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use json or text: %w", format, errUsage)
	}
}

// agentOptions are the agent's settings that do not come from its file.
type agentOptions struct {
	initialTimeout time.Duration // give up if a credential is not obtained in this time
	requestTimeout time.Duration // bounds one IssueCredential call
	backoffBase    time.Duration // first retry delay
	backoffMax     time.Duration // longest retry delay
	jitter         float64       // ± fraction of a lifetime added to renewal times
	clock          clock.Clock   // reads the time and runs the renewal, backoff and initial-timeout timers
	log            *slog.Logger
}

func defaultAgentOptions() agentOptions {
	return agentOptions{
		initialTimeout: 2 * time.Minute,
		requestTimeout: 30 * time.Second,
		backoffBase:    time.Second,
		backoffMax:     30 * time.Second,
		jitter:         client.DefaultJitter,
		clock:          clock.Real,
		log:            slog.New(slog.DiscardHandler),
	}
}

// runAgent keeps every credential in cfg written until ctx is done, then
// returns nil. It returns an error if the SVID source, the metrics listener
// or the broker connection cannot be set up, or if a credential cannot be
// obtained at start (see agentWorker.run and opts.initialTimeout).
func runAgent(ctx context.Context, cfg agentConfig, opts agentOptions) error {
	log := opts.log
	ccfg := client.Config{BrokerAddr: cfg.Broker, BrokerID: cfg.brokerID, Socket: cfg.SVID.Socket, Now: opts.clock.Now, Logger: log}
	if dir := cfg.SVID.Dir; dir != "" {
		src, err := spiffe.NewFileSource(ctx, spiffe.FileConfig{
			CertFile: filepath.Join(dir, "svid.pem"), KeyFile: filepath.Join(dir, "svid_key.pem"), BundleFile: filepath.Join(dir, "bundle.pem"),
			Logger: log,
		})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		defer src.Close()
		ccfg.Source = src
	}
	// A Workload API that never answers must fail the start too.
	newCtx, cancelNew := context.WithTimeout(ctx, opts.initialTimeout)
	c, err := client.New(newCtx, ccfg)
	cancelNew()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer c.Close()

	reg := prometheus.NewRegistry()
	metrics, err := newAgentMetrics(reg, opts.clock.Now)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if cfg.MetricsListen != "" {
		stop, err := serveAgentMetrics(cfg.MetricsListen, reg, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	ready := make(chan string, len(cfg.Credentials))
	fatal := make(chan error, len(cfg.Credentials))
	workers := map[string]*agentWorker{}
	for _, cr := range cfg.Credentials {
		w := &agentWorker{cred: cr, client: c, opts: opts, metrics: metrics, log: log}
		workers[cr.Entitlement] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, func() { ready <- cr.Entitlement }, func(err error) { fatal <- err })
		}()
	}

	timer := opts.clock.NewTimer(opts.initialTimeout)
	defer timer.Stop()
	for len(workers) > 0 {
		select {
		case ent := <-ready:
			delete(workers, ent)
		case err := <-fatal:
			return err
		case <-timer.C():
			return initialTimeoutError(workers, opts.initialTimeout)
		case <-ctx.Done():
			log.InfoContext(ctx, "agent stopping before every credential was obtained")
			return nil
		}
	}
	timer.Stop()
	log.InfoContext(ctx, "agent ready: every credential is written", slog.Int("credentials", len(cfg.Credentials)))
	<-ctx.Done()
	log.InfoContext(context.WithoutCancel(ctx), "agent stopping")
	return nil
}

// initialTimeoutError names each credential not obtained in time and wraps
// its last error, so the exit code says why.
func initialTimeoutError(pending map[string]*agentWorker, d time.Duration) error {
	names := make([]string, 0, len(pending))
	for ent := range pending {
		names = append(names, ent)
	}
	sort.Strings(names)
	errs := make([]error, 0, len(names))
	for _, ent := range names {
		last := pending[ent].lastError()
		if last == nil {
			last = errors.New("no answer yet")
		}
		errs = append(errs, fmt.Errorf("%q: %w", ent, last))
	}
	return fmt.Errorf("agent: no credential for %s within --initial-timeout %s: %w", strings.Join(names, ", "), d, errors.Join(errs...))
}

// serveAgentMetrics serves reg at /metrics on addr until stop is called.
func serveAgentMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent: metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", slog.Any("error", err))
		}
	}()
	log.Info("serving metrics", slog.String("addr", lis.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
