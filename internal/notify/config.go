package notify

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultMaxAttempts = 5
	DefaultBaseBackoff = time.Second
	DefaultQueueSize   = 1000
)

// maxBackoff caps the wait between two attempts.
const maxBackoff = 30 * time.Second

// Config configures a Webhook.
type Config struct {
	// URL receives the notifications. It must be https, or http to a
	// loopback host. It is treated as a secret (a Slack incoming webhook
	// URL embeds its credential) and never logged. Required.
	URL string
	// Timeout bounds each delivery attempt. Defaults to DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts is how many times one notification is tried before it is
	// counted as failed. Defaults to DefaultMaxAttempts.
	MaxAttempts int
	// BaseBackoff is the wait before the second attempt; it doubles for
	// each further attempt (up to 30s), with jitter. Defaults to
	// DefaultBaseBackoff.
	BaseBackoff time.Duration
	// QueueSize is how many notifications may wait for delivery; beyond
	// it Notify drops. Defaults to DefaultQueueSize.
	QueueSize int
	// HTTPClient sends the requests. Defaults to a new client. Whichever is
	// used, the Webhook does not follow redirects.
	HTTPClient *http.Client
	// Now stamps events that have no Time. Defaults to time.Now.
	Now func() time.Time
	// Logger receives drops and delivery failures (never the URL). Defaults
	// to discarding them.
	Logger *slog.Logger
}

// withDefaults validates cfg and returns it with defaults filled in.
func (cfg Config) withDefaults() (Config, error) {
	if err := checkURL(cfg.URL); err != nil {
		return cfg, err
	}
	if cfg.Timeout < 0 || cfg.MaxAttempts < 0 || cfg.BaseBackoff < 0 || cfg.QueueSize < 0 {
		return cfg, fmt.Errorf("timeout, attempts, backoff and queue size must not be negative: %w", ErrInvalidConfig)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.BaseBackoff == 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	client := &http.Client{}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.HTTPClient = client
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// checkURL reports whether raw is an https URL, or an http URL to a loopback
// host. Its errors never repeat raw, which may embed a credential.
func checkURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("webhook url is required: %w", ErrInvalidConfig)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("webhook url is not an absolute URL: %w", ErrInvalidConfig)
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("webhook url: plain http is allowed only to a loopback host: %w", ErrInvalidConfig)
	default:
		return fmt.Errorf("webhook url: scheme must be https: %w", ErrInvalidConfig)
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
