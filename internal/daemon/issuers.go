package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/jwtissuer"
	"github.com/writ-dev/writ/internal/notify"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/vault"
)

// issuerSet is every issuer the configuration asks for.
type issuerSet struct {
	byKind  map[approval.CredentialKind]broker.Issuer
	jwt     *jwtissuer.Issuer
	transit *vault.TransitJWTIssuer // nil unless a policy recipe uses it
}

// buildIssuers builds the local JWT issuer and, with a vault block, the
// Vault issuers over one logged-in client.
func (m *Daemon) buildIssuers(ctx context.Context, pol *approval.Policy, store *boltstore.Store, src spiffe.Source, reg prometheus.Registerer) (issuerSet, error) {
	cfg := m.cfg
	set := issuerSet{byKind: map[approval.CredentialKind]broker.Issuer{}}
	var err error
	set.jwt, err = jwtissuer.New(jwtissuer.Config{
		KeyFile:   filepath.Join(cfg.DataDir, "jwt-signing-key.pem"),
		Algorithm: cfg.JWT.Algorithm,
		Issuer:    cfg.JWT.Issuer,
		Logger:    m.log,
		DenyList:  store,
	})
	if err != nil {
		return set, err
	}
	set.byKind[approval.KindJWT] = set.jwt
	if cfg.Vault == nil {
		return set, nil
	}
	vc, err := newVaultClient(ctx, *cfg.Vault, src, reg, m.log)
	if err != nil {
		return set, err
	}
	m.closer = append(m.closer, vc.Close)
	if set.byKind[approval.KindVaultToken], err = vault.NewTokenIssuerWithClient(vc); err != nil {
		return set, err
	}
	if set.byKind[approval.KindVaultSecret], err = vault.NewSecretIssuer(vault.SecretIssuerConfig{Client: vc}); err != nil {
		return set, err
	}
	if keys := transitKeys(pol); len(keys) > 0 {
		set.transit, err = vault.NewTransitJWTIssuer(vault.TransitJWTConfig{Client: vc, Issuer: cfg.JWT.Issuer, Keys: keys, Mount: cfg.Vault.TransitMount, DenyList: store})
		if err != nil {
			return set, err
		}
		set.byKind[approval.KindVaultTransitJWT] = set.transit
	}
	return set, nil
}

// newRevoker builds the revoker whose durable queue lives in the store;
// revocations that succeed only after a retry are recorded in the ledger.
func (m *Daemon) newRevoker(issuers map[approval.CredentialKind]broker.Issuer, store *boltstore.Store, ledger broker.Ledger) (*revoke.Revoker, error) {
	revokers := make(map[approval.CredentialKind]revoke.Issuer, len(issuers))
	for k, iss := range issuers {
		revokers[k] = iss
	}
	return revoke.New(revoke.Config{
		Issuers: revokers,
		Queue:   store.Revocations(),
		Logger:  m.log,
		OnDone: func(ctx context.Context, it revoke.Item, outcome revoke.Outcome) {
			_, err := ledger.Append(ctx, audit.Event{Action: broker.ActionCredentialRevoked, Actor: "writd", Outcome: string(outcome),
				GrantID: it.GrantID, CredentialKind: string(it.Ref.Kind), CredentialRef: it.Ref.ID, Expires: it.Ref.Expires,
				Details: map[string]string{"request_id": it.RequestID, "attempts": fmt.Sprint(it.Attempts)}})
			if err != nil {
				m.log.ErrorContext(ctx, "record queued revocation", "grant_id", it.GrantID, "error", err)
			}
		},
		OnAlert: func(ctx context.Context, it revoke.Item) {
			m.log.ErrorContext(ctx, "revocation keeps failing; revoke it by hand if Vault stays unreachable",
				"grant_id", it.GrantID, "credential_kind", string(it.Ref.Kind), "credential_ref", it.Ref.ID, "attempts", it.Attempts, "last_error", it.LastError)
		},
	})
}

// newNotifier returns the webhook notifier, or nil when none is configured.
func (m *Daemon) newNotifier() (broker.Notifier, error) {
	f := m.cfg.Notify.WebhookURLFile
	if f == "" {
		return nil, nil
	}
	url, err := readSecretFile(f)
	if err != nil {
		return nil, fmt.Errorf("notify.webhook_url_file: %w", err)
	}
	wh, err := notify.New(notify.Config{URL: url, Logger: m.log})
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	m.closer = append(m.closer, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return wh.Close(ctx)
	})
	return wh, nil
}
