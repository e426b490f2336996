package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
)

// Methods Writ can use to log in to Vault (AuthConfig.Method).
const (
	// AuthToken uses a token given in configuration. It is never renewed or
	// replaced: when it expires, calls fail with ErrDenied.
	AuthToken = "token"
	// AuthCert logs in with a TLS client certificate (Vault's cert auth
	// method), typically the broker's own X509-SVID.
	AuthCert = "cert"
	// AuthAppRole logs in with a role ID and secret ID (Vault's AppRole auth
	// method).
	AuthAppRole = "approle"
)

// DefaultRetries is how many times an idempotent request (a read, a revoke,
// a renew) is retried after ErrUnavailable when ClientConfig.Retries is zero.
const DefaultRetries = 2

// AuthConfig says how Writ logs in to Vault.
type AuthConfig struct {
	// Method is AuthToken, AuthCert or AuthAppRole. Empty means AuthToken.
	Method string
	// Token is the Vault token (AuthToken).
	Token string
	// CertFile and KeyFile are PEM files of the client certificate and its
	// key (AuthCert). They are read again at every TLS handshake, so a
	// rotated pair is picked up. Ignored when ClientCertificate is set.
	CertFile, KeyFile string
	// ClientCertificate returns the current client certificate (AuthCert),
	// e.g. the broker's X509-SVID from its SVID source, so rotation works.
	// It is called at every TLS handshake.
	ClientCertificate func() (*tls.Certificate, error)
	// CertRole is the name of the cert auth role (auth/cert/certs/<name>)
	// to log in with (AuthCert). Empty lets Vault try every role.
	CertRole string
	// RoleID and SecretID are the AppRole credentials (AuthAppRole).
	// SecretID may be empty for a role with bind_secret_id=false.
	RoleID, SecretID string
	// MountPath is where the auth method is mounted, e.g. "cert" for
	// auth/cert. Empty means the method's name.
	MountPath string
}

// ClientConfig configures a Client. Nothing is read from the environment:
// no VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, VAULT_CACERT or proxy
// variable changes what it does.
type ClientConfig struct {
	// Address is Vault's URL, e.g. "https://vault.internal:8200". Required.
	Address string
	// CACertFile is a PEM file of CA certificates to trust for Vault's TLS
	// certificate instead of the system roots. Optional.
	CACertFile string
	// Namespace is the Vault Enterprise namespace; empty means none.
	Namespace string
	// Timeout bounds each request to Vault. Defaults to DefaultTimeout.
	Timeout time.Duration
	// Auth says how to log in. Required.
	Auth AuthConfig
	// Breaker tunes the circuit breaker shared by every issuer of the
	// client. The zero value uses the defaults.
	Breaker BreakerConfig
	// Retries is how many times an idempotent request is retried after
	// ErrUnavailable (with full jitter, never past the caller's deadline).
	// Zero means DefaultRetries; a negative value disables retries.
	// Requests that mint (token create, dynamic secret read, login) are
	// never retried.
	Retries int
	// OnRenewFailure, if set, is called when renewing Writ's own Vault
	// token fails, or a login to replace it fails, e.g. to count failures
	// in a metric. It must not block.
	OnRenewFailure func(error)
	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time
	// Logger receives login, renewal and breaker events (never tokens or
	// secrets). Defaults to discarding them.
	Logger *slog.Logger
}

// Client is Writ's authenticated connection to Vault, shared by the
// issuers. It logs in, keeps its token alive, logs in again when the token
// is lost, and runs every request through one circuit breaker. It is safe
// for concurrent use; Close stops its background renewal.
type Client struct {
	api       *api.Client // carries Writ's token
	login     *api.Client // carries no token; nil for AuthToken
	transport *http.Transport
	auth      AuthConfig
	timeout   time.Duration
	retries   int
	breaker   *breaker
	now       func() time.Time
	log       *slog.Logger
	onFailure func(error)

	loginMu sync.Mutex // serializes logins

	mu      sync.Mutex
	gen     uint64    // incremented at every login
	expires time.Time // when the token expires; zero if unknown or never
	lost    bool      // the token is known to be unusable and no login succeeded since

	fresh     chan *api.Secret // logins done outside the renewal goroutine
	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewClient returns a Client for cfg. For AuthCert and AuthAppRole it logs
// in first, under ctx, and returns the error if that fails (wrapping
// ErrDenied or ErrUnavailable where one applies); it then keeps the token
// alive in the background until Close. With AuthToken it does not contact
// Vault.
//
// Leases Writ creates (dynamic secrets) belong to Writ's token: Vault
// revokes them when that token expires. Give the login role a token_max_ttl
// well above the longest entitlement max_ttl.
func NewClient(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	transport, err := newTransport(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	httpClient := &http.Client{
		Transport: transport,
		// The API client follows Vault's redirects itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c := &Client{
		transport: transport,
		auth:      cfg.Auth,
		timeout:   cfg.Timeout,
		retries:   cfg.Retries,
		breaker:   newBreaker(cfg.Breaker, cfg.Now),
		now:       cfg.Now,
		log:       cfg.Logger,
		onFailure: cfg.OnRenewFailure,
		fresh:     make(chan *api.Secret, 1),
		done:      make(chan struct{}),
	}
	if c.breaker != nil {
		c.breaker.onChange = func(ctx context.Context, from, to breakerState) {
			c.log.WarnContext(ctx, "vault circuit breaker changed state", "from", from.String(), "to", to.String())
		}
	}
	if c.api, err = newAPIClient(cfg.Address, cfg.Namespace, httpClient); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if u, _ := url.Parse(cfg.Address); u.Scheme == "http" && !isLoopback(u.Hostname()) {
		c.log.WarnContext(ctx, "vault address is not https; tokens cross the network in clear text", "address", cfg.Address)
	}
	if cfg.Auth.Method == AuthToken {
		c.api.SetToken(cfg.Auth.Token)
		close(c.done)
		c.stop = func() {}
		return c, nil
	}
	if c.login, err = newAPIClient(cfg.Address, cfg.Namespace, httpClient); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	secret, err := c.logIn(ctx)
	if err != nil {
		transport.CloseIdleConnections()
		return nil, fmt.Errorf("vault: %w", err)
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop = stop
	go c.maintain(bg, secret)
	return c, nil
}

// validate checks cfg and fills in defaults.
func validate(cfg *ClientConfig) error {
	if cfg.Address == "" {
		return errors.New("vault: Address is required")
	}
	u, err := url.Parse(cfg.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("vault: Address %q is not an http(s) URL", cfg.Address)
	}
	if cfg.Timeout < 0 {
		return fmt.Errorf("vault: Timeout %s is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.Retries == 0:
		cfg.Retries = DefaultRetries
	case cfg.Retries < 0:
		cfg.Retries = 0
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &cfg.Auth
	if a.Method == "" {
		a.Method = AuthToken
	}
	switch a.Method {
	case AuthToken:
		if a.Token == "" {
			return errors.New("vault: Auth.Token is required for the token method")
		}
	case AuthCert:
		if u.Scheme != "https" {
			return fmt.Errorf("vault: cert auth needs an https Address, not %q", cfg.Address)
		}
		if a.ClientCertificate == nil && (a.CertFile == "" || a.KeyFile == "") {
			return errors.New("vault: cert auth needs Auth.ClientCertificate, or Auth.CertFile and Auth.KeyFile")
		}
	case AuthAppRole:
		if a.RoleID == "" {
			return errors.New("vault: Auth.RoleID is required for the approle method")
		}
	default:
		return fmt.Errorf("vault: Auth.Method %q is not %q, %q or %q", a.Method, AuthToken, AuthCert, AuthAppRole)
	}
	if a.MountPath == "" {
		a.MountPath = a.Method
	}
	if a.Method != AuthToken {
		if err := checkPath(a.MountPath); err != nil {
			return fmt.Errorf("vault: Auth.MountPath: %w", err)
		}
	}
	return nil
}

// newTransport returns the HTTP transport for cfg: no proxy from the
// environment, bounded dials and handshakes, cfg's CA certificates, and
// the client certificate for cert auth.
func newTransport(cfg ClientConfig) (*http.Transport, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACertFile != "" {
		pem, err := os.ReadFile(cfg.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("load CA certificates: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("load CA certificates: %s holds no PEM certificate", cfg.CACertFile)
		}
		tlsCfg.RootCAs = pool
	}
	if get := clientCertificate(cfg.Auth); get != nil {
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := get()
			if err != nil {
				return nil, fmt.Errorf("vault client certificate: %w", err)
			}
			return cert, nil
		}
	}
	return &http.Transport{
		Proxy:                 nil, // no HTTP(S)_PROXY from the environment
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
	}, nil
}

// clientCertificate returns the function that yields the TLS client
// certificate for a, or nil if a has none.
func clientCertificate(a AuthConfig) func() (*tls.Certificate, error) {
	switch {
	case a.ClientCertificate != nil:
		return a.ClientCertificate
	case a.CertFile != "" && a.KeyFile != "":
		return func() (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
			if err != nil {
				return nil, err
			}
			return &cert, nil
		}
	default:
		return nil
	}
}

// newAPIClient builds an API client for addr over httpClient, undoing
// everything api.NewClient takes from the environment: it applies
// VAULT_TOKEN, VAULT_NAMESPACE and VAULT_HEADERS, and the request path
// honours VAULT_WRAP_TTL. The client carries no token.
func newAPIClient(addr, namespace string, httpClient *http.Client) (*api.Client, error) {
	client, err := api.NewClient(&api.Config{
		Address:    addr,
		HttpClient: httpClient,
		// Creating a token or reading a dynamic secret is not idempotent: a
		// retry after a lost response would mint a second one. The Client
		// retries idempotent requests itself.
		MaxRetries: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	client.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}}) // drops VAULT_HEADERS
	client.ClearNamespace()                                                 // drops VAULT_NAMESPACE
	if namespace != "" {
		client.SetNamespace(namespace)
	}
	client.SetWrappingLookupFunc(func(string, string) string { return "" }) // ignores VAULT_WRAP_TTL
	client.ClearToken()                                                     // drops VAULT_TOKEN
	return client, nil
}

// isLoopback reports whether host is "localhost" or a loopback IP.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Healthy reports whether the client can serve requests now: its circuit
// breaker is not open and, for AuthCert and AuthAppRole, it holds a token
// that has not expired and is not known to be lost.
func (c *Client) Healthy() bool {
	if c.breaker.isOpen() {
		return false
	}
	if c.auth.Method == AuthToken {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.lost && (c.expires.IsZero() || c.now().Before(c.expires))
}

// Close stops renewing the client's token and closes idle connections. It
// does not revoke the token: the leases Writ created belong to it and would
// be revoked too. Close is idempotent; the client must not be used after.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.stop()
		<-c.done
		c.transport.CloseIdleConnections()
	})
	return nil
}
