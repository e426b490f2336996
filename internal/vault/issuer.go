package vault

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
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
	c   *Client
	now func() time.Time
	log *slog.Logger

	rolesMu sync.Mutex
	roles   map[string]cachedRole
}

// New returns a TokenIssuer talking to cfg.Address with the static token
// cfg.Token. It does not contact Vault; the first request does. To log in
// with cert or AppRole auth instead, use NewClient and
// NewTokenIssuerWithClient.
func New(cfg Config) (*TokenIssuer, error) {
	if cfg.Token == "" {
		return nil, errors.New("vault: Token is required")
	}
	c, err := NewClient(context.Background(), ClientConfig{
		Address:    cfg.Address,
		CACertFile: cfg.CACertFile,
		Namespace:  cfg.Namespace,
		Timeout:    cfg.Timeout,
		Auth:       AuthConfig{Method: AuthToken, Token: cfg.Token},
		Now:        cfg.Now,
		Logger:     cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return NewTokenIssuerWithClient(c)
}

// NewTokenIssuerWithClient returns a TokenIssuer that uses c, sharing its
// login, circuit breaker, clock and logger with the client's other issuers.
func NewTokenIssuerWithClient(c *Client) (*TokenIssuer, error) {
	if c == nil {
		return nil, errors.New("vault: token issuer: Client is required")
	}
	return &TokenIssuer{c: c, now: c.now, log: c.log}, nil
}
