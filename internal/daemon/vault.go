package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/vault"
)

// newVaultClient logs the broker in to Vault as configured. With cert auth
// the broker presents its own X.509-SVID, read from the SVID source at each
// login so rotation is honoured.
func newVaultClient(ctx context.Context, c VaultConfig, src spiffe.Source, reg prometheus.Registerer, log *slog.Logger) (*vault.Client, error) {
	renewFailures := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "writ_vault_token_renew_failures_total",
		Help: "Failures to renew or re-acquire the broker's own Vault token.",
	})
	reg.MustRegister(renewFailures)
	auth := vault.AuthConfig{Method: c.Auth.Method, CertRole: c.Auth.CertRole, MountPath: c.Auth.Mount}
	switch {
	case c.TokenFile != "":
		auth.Method = vault.AuthToken
		tok, err := readSecretFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("vault.token_file: %w", err)
		}
		auth.Token = tok
	case auth.Method == vault.AuthToken:
		tok, err := readSecretFile(c.Auth.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("vault.auth.token_file: %w", err)
		}
		auth.Token = tok
	case auth.Method == vault.AuthAppRole:
		var err error
		if auth.RoleID, err = readSecretFile(c.Auth.RoleIDFile); err != nil {
			return nil, fmt.Errorf("vault.auth.role_id_file: %w", err)
		}
		if auth.SecretID, err = readSecretFile(c.Auth.SecretIDFile); err != nil {
			return nil, fmt.Errorf("vault.auth.secret_id_file: %w", err)
		}
	case auth.Method == vault.AuthCert:
		auth.ClientCertificate = func() (*tls.Certificate, error) {
			svid, err := src.GetX509SVID()
			if err != nil {
				return nil, err
			}
			cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
			for _, c := range svid.Certificates {
				cert.Certificate = append(cert.Certificate, c.Raw)
			}
			return cert, nil
		}
	}
	vc, err := vault.NewClient(ctx, vault.ClientConfig{
		Address:    c.Address,
		CACertFile: c.CACertFile,
		Timeout:    c.Timeout,
		Auth:       auth,
		OnRenewFailure: func(err error) {
			renewFailures.Inc()
		},
		Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return vc, nil
}

// transitKeys returns the transit keys the policy's entitlements sign with.
func transitKeys(p *approval.Policy) []string {
	seen := map[string]bool{}
	for _, e := range p.Entitlements {
		if e.Recipe.Kind == approval.KindVaultTransitJWT {
			seen[e.Recipe.TransitKey] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
