package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/vault/api"
)

// DefaultTimeout bounds each Vault request when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config configures a TokenIssuer. Nothing is read from the environment.
type Config struct {
	// Address is Vault's URL, e.g. "https://vault.internal:8200". Required.
	Address string
	// Token is the Vault token Writ acts with; it needs IssuerPolicy. Required.
	Token string
	// Namespace is the Vault Enterprise namespace; empty means none.
	Namespace string
	// CACertFile is a PEM file of CA certificates to trust for Vault's TLS
	// certificate instead of the system roots. Optional.
	CACertFile string
	// Timeout bounds each request to Vault. Defaults to DefaultTimeout.
	Timeout time.Duration
	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time
	// Logger receives issuance and revocation events (never token values).
	// Defaults to discarding them.
	Logger *slog.Logger
}

// TokenIssuer mints Vault tokens from token roles. It is safe for concurrent
// use.
type TokenIssuer struct {
	client  *api.Client
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
}

// New returns a TokenIssuer talking to cfg.Address with cfg.Token. It does not
// contact Vault; the first request does.
func New(cfg Config) (*TokenIssuer, error) {
	if cfg.Address == "" {
		return nil, errors.New("vault: Address is required")
	}
	u, err := url.Parse(cfg.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("vault: Address %q is not an http(s) URL", cfg.Address)
	}
	if cfg.Token == "" {
		return nil, errors.New("vault: Token is required")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("vault: Timeout %s is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		cfg.Logger.Warn("vault address is not https; tokens cross the network in clear text", "address", cfg.Address)
	}
	return &TokenIssuer{client: client, timeout: cfg.Timeout, now: cfg.Now, log: cfg.Logger}, nil
}

// newClient builds an API client from cfg alone. api.DefaultConfig reads
// VAULT_* variables and api.NewClient applies VAULT_TOKEN, VAULT_NAMESPACE
// and VAULT_HEADERS, and the request path honours VAULT_WRAP_TTL; each of
// those is overridden here.
func newClient(cfg Config) (*api.Client, error) {
	transport := &http.Transport{
		Proxy:                 nil, // no HTTP(S)_PROXY from the environment
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
	}
	apiCfg := &api.Config{
		Address: cfg.Address,
		HttpClient: &http.Client{
			Transport: transport,
			// The API client follows Vault's redirects itself.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		// Creating a token is not idempotent: a retry after a lost response
		// would mint a second one. Fail fast instead; the broker decides.
		MaxRetries: 0,
	}
	if cfg.CACertFile != "" {
		if err := apiCfg.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACertFile}); err != nil {
			return nil, fmt.Errorf("load CA certificates from %s: %w", cfg.CACertFile, err)
		}
	}
	client, err := api.NewClient(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	client.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}}) // drops VAULT_HEADERS
	client.ClearNamespace()                                                 // drops VAULT_NAMESPACE
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}
	client.SetWrappingLookupFunc(func(string, string) string { return "" }) // ignores VAULT_WRAP_TTL
	client.SetToken(cfg.Token)                                              // replaces VAULT_TOKEN
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

// withTimeout bounds one Vault request.
func (i *TokenIssuer) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, i.timeout)
}
