package client

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/writ-dev/writ/internal/spiffe"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultRenewFraction = 0.66
	DefaultJitter        = 0.1
	DefaultTimeout       = 30 * time.Second
)

// SocketEnv is the environment variable New reads, once, for the Workload
// API address when neither Config.Socket nor Config.Source is set.
const SocketEnv = "SPIFFE_ENDPOINT_SOCKET"

// retryAfterFailure is how long Credential keeps serving a still-valid cached
// credential without contacting the broker after a failed renewal, so that
// callers on a hot path do not turn a broker outage into a stream of RPCs.
const retryAfterFailure = 2 * time.Second

// Source supplies the workload's X509-SVID and the trust bundle the broker's
// SVID is verified against. Its methods are called on every TLS handshake and
// must be safe for concurrent use. go-spiffe's *workloadapi.X509Source
// implements it.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// Config configures a Client. BrokerAddr and BrokerID are required, and the
// SVID comes from exactly one of Socket and Source.
type Config struct {
	// BrokerAddr is the broker's gRPC address, host:port. Required.
	BrokerAddr string
	// BrokerID is the SPIFFE ID the broker must present; the connection is
	// refused otherwise. Required.
	BrokerID spiffeid.ID

	// Socket is the SPIFFE Workload API address, for example
	// "unix:///run/spire/agent.sock". When both Socket and Source are empty,
	// New reads the SPIFFE_ENDPOINT_SOCKET environment variable once.
	Socket string
	// Source supplies the SVID and bundle instead of the Workload API, for
	// tests and PEM files. The Client does not close it.
	Source Source

	// RenewFraction is the fraction of a credential's lifetime after which
	// Credential renews it, in (0, 1]. Zero means DefaultRenewFraction.
	RenewFraction float64
	// Jitter moves each renewal by a random amount of up to ± this fraction
	// of the lifetime, in [0, 1). Zero means DefaultJitter; use a negative
	// value for none.
	Jitter float64
	// Timeout bounds one request to the broker made by Credential on behalf of
	// its callers. Zero means DefaultTimeout.
	Timeout time.Duration

	// Now is the clock used to decide when to renew. Nil means time.Now.
	Now func() time.Time
	// Logger receives renewal failures. Nil discards them. Secrets are
	// never logged.
	Logger *slog.Logger
}

// Client talks to a Writ broker as one workload. It is safe for concurrent
// use. The caller must Close it.
type Client struct {
	rpc      brokerv1.BrokerServiceClient
	conn     *grpc.ClientConn
	ownedSrc spiffe.Source // closed by Close; nil for Config.Source

	fraction, jitter float64
	timeout          time.Duration
	now              func() time.Time
	rand             func() float64
	log              *slog.Logger

	// base is cancelled by Close; requests made on behalf of several
	// callers run under it.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	cache   map[string]*entry
	flights map[string]*flight
}

// entry is a cached credential.
type entry struct {
	cred       Credential
	renewAt    time.Time
	retryAfter time.Time // after a failed renewal: no new attempt before this
}

// flight is one IssueCredential call that concurrent callers wait for.
type flight struct {
	done chan struct{}
	cred Credential
	err  error
}

// New returns a Client for the broker at cfg.BrokerAddr. With a Workload API
// socket it waits, bounded by ctx, for the first SVID, so a missing agent
// fails here; ctx does not bound the Client after New returns. Connections
// to the broker are made lazily, on the first request.
//
// New returns an error wrapping ErrInvalidConfig for a missing or
// inconsistent setting.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Source == nil && cfg.Socket == "" {
		cfg.Socket = os.Getenv(SocketEnv)
		if cfg.Socket == "" {
			return nil, fmt.Errorf("client: no SVID source: set Config.Socket, Config.Source or %s: %w", SocketEnv, ErrInvalidConfig)
		}
	}
	c := &Client{
		fraction: cfg.RenewFraction,
		jitter:   cfg.Jitter,
		timeout:  cfg.Timeout,
		now:      cfg.Now,
		rand:     rand.Float64,
		log:      cfg.Logger,
		cache:    map[string]*entry{},
		flights:  map[string]*flight{},
	}
	if c.fraction == 0 {
		c.fraction = DefaultRenewFraction
	}
	switch {
	case c.jitter == 0:
		c.jitter = DefaultJitter
	case c.jitter < 0:
		c.jitter = 0
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}

	var src spiffe.Source
	if cfg.Source != nil {
		src = nopCloser{cfg.Source}
	} else {
		s, err := spiffe.NewWorkloadSource(ctx, cfg.Socket)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		src, c.ownedSrc = s, s
	}
	conn, err := grpc.NewClient(cfg.BrokerAddr,
		grpc.WithTransportCredentials(spiffe.ClientCredentials(src, tlsconfig.AuthorizeID(cfg.BrokerID))),
		// Credentials live minutes: reconnect to a restarted broker within
		// seconds, not gRPC's default of up to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second,
		}}),
	)
	if err != nil {
		if c.ownedSrc != nil {
			_ = c.ownedSrc.Close()
		}
		return nil, fmt.Errorf("client: connect to %s: %w", cfg.BrokerAddr, err)
	}
	c.conn = conn
	c.rpc = brokerv1.NewBrokerServiceClient(conn)
	c.base, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func (cfg Config) check() error {
	switch {
	case cfg.BrokerAddr == "":
		return fmt.Errorf("client: BrokerAddr is required: %w", ErrInvalidConfig)
	case cfg.BrokerID.IsZero():
		return fmt.Errorf("client: BrokerID is required (the SPIFFE ID the broker presents): %w", ErrInvalidConfig)
	case cfg.Socket != "" && cfg.Source != nil:
		return fmt.Errorf("client: set Socket or Source, not both: %w", ErrInvalidConfig)
	case cfg.RenewFraction < 0 || cfg.RenewFraction > 1:
		return fmt.Errorf("client: RenewFraction %v is not in (0, 1]: %w", cfg.RenewFraction, ErrInvalidConfig)
	case cfg.Jitter >= 1:
		return fmt.Errorf("client: Jitter %v is not below 1: %w", cfg.Jitter, ErrInvalidConfig)
	case cfg.Timeout < 0:
		return fmt.Errorf("client: negative Timeout %v: %w", cfg.Timeout, ErrInvalidConfig)
	}
	return nil
}

// nopCloser adapts a caller's Source, which the Client must not close.
type nopCloser struct{ Source }

func (nopCloser) Close() error { return nil }

// Close cancels requests in flight, waits for them to end, and closes the
// connection and the Workload API source New opened. Later calls return
// ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	err := c.conn.Close()
	if c.ownedSrc != nil {
		if serr := c.ownedSrc.Close(); err == nil {
			err = serr
		}
	}
	if err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	return nil
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
