package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// LedgerConfig configures how the ledger is published (docs/ledger.md).
type LedgerConfig struct {
	// Origin names the log in its checkpoints and is the name of its
	// signing key (data_dir/ledger.key). It is fixed when the key is
	// created; empty means the key's name, or for a new key
	// "<jwt.issuer host>/writ-ledger" ("writ-ledger" without an issuer).
	Origin string `yaml:"origin"`
	// Checkpoint says how often checkpoints are signed.
	Checkpoint LedgerCheckpointConfig `yaml:"checkpoint"`
	// Witnesses receive every checkpoint.
	Witnesses []LedgerWitnessConfig `yaml:"witnesses"`
}

// LedgerCheckpointConfig: a checkpoint is signed once EveryRecords records
// were appended since the last one, or Every after it if any was, and at
// shutdown.
type LedgerCheckpointConfig struct {
	EveryRecords int64         `yaml:"every_records"`
	Every        time.Duration `yaml:"every"`
}

// LedgerWitnessConfig is one witness: a directory (on another volume) whose
// checkpoints.log each checkpoint is appended to, or a webhook each is
// POSTed to. Exactly one is set.
type LedgerWitnessConfig struct {
	Dir     string `yaml:"dir"`
	Webhook string `yaml:"webhook"`
}

func (c LedgerConfig) validate() []error {
	var errs []error
	if c.Checkpoint.EveryRecords < 0 {
		errs = append(errs, fmt.Errorf("ledger.checkpoint.every_records: must not be negative"))
	}
	if c.Checkpoint.Every < 0 {
		errs = append(errs, fmt.Errorf("ledger.checkpoint.every: must not be negative"))
	}
	for i, w := range c.Witnesses {
		field := fmt.Sprintf("ledger.witnesses[%d]", i)
		switch {
		case (w.Dir == "") == (w.Webhook == ""):
			errs = append(errs, fmt.Errorf("%s: set exactly one of dir or webhook", field))
		case w.Dir != "" && !filepath.IsAbs(w.Dir):
			errs = append(errs, fmt.Errorf("%s.dir: %q must be an absolute path", field, w.Dir))
		case w.Webhook != "":
			if u, err := url.Parse(w.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("%s.webhook: must be an http(s) URL", field))
			}
		}
	}
	return errs
}

// startCheckpointer loads (or creates) the ledger key, starts the
// checkpointer in the background, woken by every append, and arranges for
// it to sign a last checkpoint at shutdown, before the store closes.
func (d *Daemon) startCheckpointer(ctx context.Context, store *boltstore.Store, reg prometheus.Registerer) error {
	cfg := d.cfg.Ledger
	defaultOrigin := "writ-ledger"
	if u, err := url.Parse(d.cfg.JWT.Issuer); err == nil && u.Host != "" {
		defaultOrigin = u.Host + "/writ-ledger"
	}
	signer, vkey, err := checkpoint.LoadOrCreateKey(filepath.Join(d.cfg.DataDir, checkpoint.KeyFile), cfg.Origin, defaultOrigin)
	if err != nil {
		return err
	}
	var witnesses []checkpoint.Witness
	for _, w := range cfg.Witnesses {
		var wt checkpoint.Witness
		if w.Dir != "" {
			wt, err = checkpoint.NewDirWitness(w.Dir)
		} else {
			wt, err = checkpoint.NewWebhookWitness(w.Webhook, nil)
		}
		if err != nil {
			return fmt.Errorf("ledger.witnesses: %w", err)
		}
		witnesses = append(witnesses, wt)
	}
	cp, err := checkpoint.New(ctx, checkpoint.Config{
		Store:        store,
		Signer:       signer,
		EveryRecords: cfg.Checkpoint.EveryRecords,
		Every:        cfg.Checkpoint.Every,
		Witnesses:    witnesses,
		Metrics:      checkpoint.NewMetrics(reg),
		Logger:       d.log,
	})
	if err != nil {
		return err
	}
	d.checkpointer, d.ledgerKey = cp, vkey
	store.OnAppend(cp.Notify)
	go cp.Run()
	d.life.addCloser("ledger checkpointer", func() error {
		store.OnAppend(nil)
		timeout := d.cfg.ShutdownTimeout
		if timeout <= 0 {
			timeout = DefaultConfig().ShutdownTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 10*time.Second))
		defer cancel()
		return cp.Close(ctx)
	})
	d.log.Info("ledger checkpoints", "origin", signer.Name(), "verifier_key", vkey, "witnesses", len(witnesses))
	return nil
}

// mountLedger serves the checkpoint, the verifier key and proofs beside the
// JWKS.
func (d *Daemon) mountLedger(mux *http.ServeMux, store *boltstore.Store) {
	if d.checkpointer == nil {
		return
	}
	mux.Handle("GET "+checkpoint.PathPrefix, checkpoint.Handler(checkpoint.HandlerConfig{
		Tree:        store,
		Latest:      d.checkpointer.Latest,
		VerifierKey: d.ledgerKey,
		Logger:      d.log,
	}))
}
