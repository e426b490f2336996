package oidc

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults and limits applied by New.
const (
	// DefaultGroupsClaim is the claim read for group membership.
	DefaultGroupsClaim = "groups"
	// DefaultLeeway is the clock skew tolerated on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest Leeway New accepts.
	MaxLeeway = 60 * time.Second
	// MaxTokenSize is the largest token, in bytes, Verify will parse.
	// Larger ones are rejected before any decoding, so an attacker cannot
	// make the parser allocate in proportion to their input.
	MaxTokenSize = 8 << 10
)

// DefaultAlgorithms is the algorithm allow-list used when Config.Algorithms
// is empty.
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// allowedAlgorithms are the asymmetric JWS algorithms a Config may list.
// "none" and the HMAC family (HS256/384/512) are never allowed: with a public
// JWKS, an HMAC "secret" is public (the key-confusion attack).
var allowedAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the provider's issuer identifier, compared exactly with the
	// token's "iss" claim, e.g. "https://accounts.example.com". It must be
	// https, or http to a loopback host. Required.
	Issuer string
	// Audience is the client ID tokens must be issued to (the "aud"
	// claim must contain it). Required.
	Audience string
	// JWKSURL is the provider's key set. When empty, New reads jwks_uri
	// from Issuer + "/.well-known/openid-configuration". It must be https,
	// or http to a loopback host.
	JWKSURL string
	// Algorithms is the allow-list of signing algorithms. It defaults to
	// DefaultAlgorithms; New refuses "none", HS256/384/512 and any
	// algorithm it does not know.
	Algorithms []string
	// GroupsClaim names the claim holding the person's groups, a JSON list
	// of strings. Defaults to DefaultGroupsClaim.
	GroupsClaim string
	// Leeway is the clock skew tolerated on time claims. Zero means
	// DefaultLeeway; New refuses negative values and values above
	// MaxLeeway.
	Leeway time.Duration
	// HTTPClient fetches the discovery document and the key set. Defaults
	// to a client with a 10 second timeout.
	HTTPClient *http.Client
	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time
	// Logger receives key refresh failures and, at debug level, the causes
	// of rejected tokens (never the tokens). Defaults to discarding them.
	Logger *slog.Logger
}

// withDefaults validates cfg and returns it with defaults filled in. The
// returned Algorithms slice is a copy.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Issuer == "" {
		return cfg, fmt.Errorf("issuer is required: %w", ErrInvalidConfig)
	}
	if err := checkURL(cfg.Issuer); err != nil {
		return cfg, fmt.Errorf("issuer: %w", err)
	}
	if cfg.Audience == "" {
		return cfg, fmt.Errorf("audience is required: %w", ErrInvalidConfig)
	}
	if cfg.JWKSURL != "" {
		if err := checkURL(cfg.JWKSURL); err != nil {
			return cfg, fmt.Errorf("jwks url: %w", err)
		}
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	for _, alg := range cfg.Algorithms {
		if !slices.Contains(allowedAlgorithms, alg) {
			return cfg, fmt.Errorf("algorithm %q is not allowed (allowed: %s): %w",
				alg, strings.Join(allowedAlgorithms, ", "), ErrInvalidConfig)
		}
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = DefaultGroupsClaim
	}
	switch {
	case cfg.Leeway < 0:
		return cfg, fmt.Errorf("leeway %s is negative: %w", cfg.Leeway, ErrInvalidConfig)
	case cfg.Leeway > MaxLeeway:
		return cfg, fmt.Errorf("leeway %s exceeds %s: %w", cfg.Leeway, MaxLeeway, ErrInvalidConfig)
	case cfg.Leeway == 0:
		cfg.Leeway = DefaultLeeway
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// checkURL reports whether raw is an absolute https URL, or an http URL to a
// loopback host, without query, fragment or user info.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, ErrInvalidConfig)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("%q must be a plain absolute URL: %w", raw, ErrInvalidConfig)
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%q: plain http is allowed only to a loopback host: %w", raw, ErrInvalidConfig)
	default:
		return fmt.Errorf("%q: scheme must be https: %w", raw, ErrInvalidConfig)
	}
}

// isLoopback reports whether host is "localhost" or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
