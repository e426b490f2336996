package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is writd's configuration file (writ.yaml). Unknown keys are errors.
type Config struct {
	// Listen is the workload/admin gRPC address (mutual TLS with SVIDs).
	Listen string `yaml:"listen"`
	// HTTP serves the JWKS, /metrics and /healthz.
	HTTP HTTPConfig `yaml:"http"`
	// SVID says where the broker's own X.509-SVID and trust bundle come from.
	SVID SVIDConfig `yaml:"svid"`
	// Policy is the path of the policy file.
	Policy string `yaml:"policy"`
	// DataDir holds the ledger database and the JWT signing key.
	DataDir string `yaml:"data_dir"`
	// JWT configures the local JWT issuer.
	JWT JWTConfig `yaml:"jwt"`
	// Vault configures the Vault token issuer; omit it when no entitlement
	// mints Vault credentials.
	Vault *VaultConfig `yaml:"vault"`
	// Admin configures the admin API.
	Admin AdminConfig `yaml:"admin"`
	// OIDC configures how people sign in to the admin API.
	OIDC *OIDCConfig `yaml:"oidc"`
	// Notify configures notifications.
	Notify NotifyConfig `yaml:"notify"`
	// JWTSVID configures a listener where workloads behind TLS-terminating
	// proxies authenticate with JWT-SVIDs instead of mTLS.
	JWTSVID *JWTSVIDConfig `yaml:"jwt_svid"`
	// Log configures logging.
	Log LogConfig `yaml:"log"`
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// HTTPConfig configures the HTTP listener.
type HTTPConfig struct {
	// Listen address; empty disables the listener.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile enable TLS. Without them, Listen must be loopback.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// SVIDConfig selects the broker's SVID source: a Workload API socket, or PEM files.
type SVIDConfig struct {
	WorkloadAPISocket string `yaml:"workload_api_socket"`
	CertFile          string `yaml:"cert_file"`
	KeyFile           string `yaml:"key_file"`
	BundleFile        string `yaml:"bundle_file"`
	// JWTBundleFile holds the trust domain's JWT-SVID signing keys (SPIFFE
	// bundle JSON) for jwt_svid when PEM files are used; with a Workload API
	// socket the agent serves them.
	JWTBundleFile string `yaml:"jwt_bundle_file"`
	// ReloadInterval is how often PEM files are checked for changes.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// JWTConfig configures the local JWT issuer.
type JWTConfig struct {
	// Issuer is the "iss" claim: the URL relying parties know the broker by.
	Issuer string `yaml:"issuer"`
	// Algorithm is EdDSA (default) or ES256.
	Algorithm string `yaml:"algorithm"`
}

// VaultConfig configures the broker's Vault client.
type VaultConfig struct {
	Address    string `yaml:"address"`
	CACertFile string `yaml:"ca_cert_file"`
	// TokenFile holds a static Vault token (mode 0600): shorthand for
	// auth: {method: token, token_file: …}. Secrets are never inline.
	TokenFile string        `yaml:"token_file"`
	Timeout   time.Duration `yaml:"timeout"`
	// Auth is how the broker logs in to Vault.
	Auth VaultAuthConfig `yaml:"auth"`
	// TransitMount is the transit engine's mount (default "transit").
	TransitMount string `yaml:"transit_mount"`
}

// VaultAuthConfig is the broker's own Vault login. Tokens from cert and
// AppRole logins are renewed before they expire and re-acquired when lost.
type VaultAuthConfig struct {
	// Method is token, cert (TLS certificate auth with the broker's own
	// X.509-SVID) or approle.
	Method string `yaml:"method"`
	// TokenFile holds the token for method token (mode 0600).
	TokenFile string `yaml:"token_file"`
	// CertRole is the cert auth role to log in as (optional).
	CertRole string `yaml:"cert_role"`
	// RoleIDFile and SecretIDFile hold the AppRole credentials (mode 0600).
	RoleIDFile   string `yaml:"role_id_file"`
	SecretIDFile string `yaml:"secret_id_file"`
	// Mount is the auth method's mount path when not the default.
	Mount string `yaml:"mount"`
}

// AdminConfig configures the admin API.
type AdminConfig struct {
	// Operators are SPIFFE IDs allowed to call the admin API over mTLS.
	Operators []string `yaml:"operators"`
	// Listen is the TLS address where people call the admin API with OIDC
	// ID tokens; the broker presents its SVID. Empty disables it.
	Listen string `yaml:"listen"`
}

// OIDCConfig configures verification of people's ID tokens.
type OIDCConfig struct {
	// Issuer is the IdP's issuer URL, compared exactly with "iss".
	Issuer string `yaml:"issuer"`
	// Audience is the client ID tokens must be issued to.
	Audience string `yaml:"audience"`
	// JWKSURL overrides discovery of the IdP's keys.
	JWKSURL string `yaml:"jwks_url"`
	// GroupsClaim names the claim holding the person's groups.
	GroupsClaim string `yaml:"groups_claim"`
	// Algorithms is the allow-list of signing algorithms.
	Algorithms []string `yaml:"algorithms"`
}

// NotifyConfig configures notifications.
type NotifyConfig struct {
	// WebhookURLFile holds a Slack-compatible incoming webhook URL (it
	// grants posting, so it is kept out of this file). Empty disables.
	WebhookURLFile string `yaml:"webhook_url_file"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// DefaultConfig returns the defaults applied before a file is read.
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:8443",
		HTTP:            HTTPConfig{Listen: "127.0.0.1:8080"},
		DataDir:         "/var/lib/writ",
		JWT:             JWTConfig{Algorithm: "EdDSA"},
		Log:             LogConfig{Level: "info", Format: "json"},
		ShutdownTimeout: 30 * time.Second,
		SVID:            SVIDConfig{ReloadInterval: 5 * time.Second},
	}
}

// LoadConfig reads path strictly over the defaults and validates it.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.Vault != nil && cfg.Vault.Timeout == 0 {
		cfg.Vault.Timeout = 10 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks the configuration before any listener opens. It reports
// every problem at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if c.HTTP.Listen != "" {
		host, _, err := net.SplitHostPort(c.HTTP.Listen)
		switch {
		case err != nil:
			bad("http.listen", "%q is not host:port", c.HTTP.Listen)
		case (c.HTTP.CertFile == "") != (c.HTTP.KeyFile == ""):
			bad("http", "cert_file and key_file go together")
		case c.HTTP.CertFile == "" && !isLoopback(host):
			bad("http.listen", "%q is not a loopback address: plain HTTP is allowed only on loopback; set http.cert_file and http.key_file", c.HTTP.Listen)
		}
		for _, f := range []struct{ field, path string }{{"http.cert_file", c.HTTP.CertFile}, {"http.key_file", c.HTTP.KeyFile}} {
			if f.path != "" {
				if _, err := os.Stat(f.path); err != nil {
					bad(f.field, "%v", err)
				}
			}
		}
	}
	files := c.SVID.CertFile != "" || c.SVID.KeyFile != "" || c.SVID.BundleFile != ""
	switch {
	case c.SVID.WorkloadAPISocket != "" && files:
		bad("svid", "set either workload_api_socket or cert_file/key_file/bundle_file, not both")
	case c.SVID.WorkloadAPISocket != "":
		if u, err := url.Parse(c.SVID.WorkloadAPISocket); err != nil || (u.Scheme != "unix" && u.Scheme != "tcp") {
			bad("svid.workload_api_socket", "%q must be a unix:///path or tcp://host:port address", c.SVID.WorkloadAPISocket)
		}
	case files:
		for _, f := range []struct{ field, path string }{{"svid.cert_file", c.SVID.CertFile}, {"svid.key_file", c.SVID.KeyFile}, {"svid.bundle_file", c.SVID.BundleFile}} {
			if f.path == "" {
				bad(f.field, "is required when SVID files are used")
			} else if _, err := os.Stat(f.path); err != nil {
				bad(f.field, "%v", err)
			}
		}
	default:
		bad("svid", "set workload_api_socket (SPIRE agent) or cert_file, key_file and bundle_file")
	}
	if c.SVID.ReloadInterval < 0 {
		bad("svid.reload_interval", "must not be negative")
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			bad("admin.listen", "%q is not host:port", c.Admin.Listen)
		}
		if c.OIDC == nil {
			bad("admin.listen", "people sign in with OIDC: configure oidc.issuer and oidc.audience, or remove admin.listen")
		}
	}
	if o := c.OIDC; o != nil {
		if u, err := url.Parse(o.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("oidc.issuer", "%q must be an http(s) URL", o.Issuer)
		} else if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			bad("oidc.issuer", "%q uses plain HTTP to a non-loopback host; use https", o.Issuer)
		}
		if o.Audience == "" {
			bad("oidc.audience", "is required: the client ID the IdP issues tokens to")
		}
	}
	if f := c.Notify.WebhookURLFile; f != "" {
		if _, err := os.Stat(f); err != nil {
			bad("notify.webhook_url_file", "%v", err)
		}
	}
	if c.Policy == "" {
		bad("policy", "is required: the path of the policy file")
	}
	if c.DataDir == "" {
		bad("data_dir", "is required")
	}
	if c.JWT.Algorithm != "EdDSA" && c.JWT.Algorithm != "ES256" {
		bad("jwt.algorithm", "%q is not supported (EdDSA or ES256)", c.JWT.Algorithm)
	}
	if c.JWT.Issuer != "" {
		if u, err := url.Parse(c.JWT.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("jwt.issuer", "%q must be an http(s) URL", c.JWT.Issuer)
		}
	}
	if v := c.Vault; v != nil {
		if u, err := url.Parse(v.Address); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("vault.address", "%q must be an http(s) URL", v.Address)
		} else if u.Scheme == "http" && !isLoopback(u.Hostname()) {
			bad("vault.address", "%q uses plain HTTP to a non-loopback host; use https", v.Address)
		}
		secretFile := func(field, path string) {
			if path == "" {
				bad(field, "is required")
			} else if fi, err := os.Stat(path); err != nil {
				bad(field, "%v", err)
			} else if fi.Mode().Perm()&0o077 != 0 {
				bad(field, "%s is readable by group or others (mode %o); chmod 600 it", path, fi.Mode().Perm())
			}
		}
		switch method := v.Auth.Method; {
		case v.TokenFile != "" && method != "":
			bad("vault.token_file", "use either vault.token_file or vault.auth, not both")
		case v.TokenFile != "":
			secretFile("vault.token_file", v.TokenFile)
		case method == "token":
			secretFile("vault.auth.token_file", v.Auth.TokenFile)
		case method == "approle":
			secretFile("vault.auth.role_id_file", v.Auth.RoleIDFile)
			secretFile("vault.auth.secret_id_file", v.Auth.SecretIDFile)
		case method == "cert":
			if !strings.HasPrefix(v.Address, "https://") {
				bad("vault.auth.method", "cert auth needs TLS: vault.address must be https")
			}
		case method == "":
			bad("vault.auth", "set vault.token_file, or vault.auth.method (token, cert or approle)")
		default:
			bad("vault.auth.method", "%q is not token, cert or approle", method)
		}
		if v.Timeout < 0 {
			bad("vault.timeout", "must not be negative")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive")
	}
	errs = append(errs, c.validateJWTSVID()...)
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
