package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/writ-dev/writ/broker/client"
	"github.com/writ-dev/writ/internal/clock"
)

// hookTimeout bounds one run of a credential's command.
const hookTimeout = 30 * time.Second

// agentWorker keeps one credential's file current: it obtains a credential,
// writes the file, runs the hook, sleeps until the renewal time, and on
// failure retries with capped exponential backoff. It never removes the
// file: a credential that expires while the broker is unreachable stays in
// place (relying parties refuse it anyway) and is reported loudly.
type agentWorker struct {
	cred    agentCredential
	client  *client.Client
	opts    agentOptions
	metrics *agentMetrics
	log     *slog.Logger

	mu      sync.Mutex
	lastErr error // the last failure, for the initial-timeout message
}

// run loops until ctx is done. It calls ready after the first file is
// written, and fatal (then returns) if the first attempt fails with an error
// retrying cannot fix.
func (w *agentWorker) run(ctx context.Context, ready func(), fatal func(error)) {
	var (
		have          *client.Credential // the credential in the file
		failures      int
		expiryLogged  bool
		fraction      = w.cred.RenewFraction
		readyReported bool
	)
	if fraction == 0 {
		fraction = client.DefaultRenewFraction
	}
	for {
		cred, err := w.refresh(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.setLastErr(err)
			if have == nil && permanent(err) {
				fatal(fmt.Errorf("agent: cannot obtain a credential for %q, and retrying will not help: %w", w.cred.Entitlement, err))
				return
			}
			failures++
			w.metrics.failed(w.cred.Entitlement)
			delay := w.backoff(failures)
			level := slog.LevelWarn
			if permanent(err) {
				level = slog.LevelError // e.g. the policy no longer allows this workload
			}
			attrs := []any{slog.String("entitlement", w.cred.Entitlement), slog.Int("failures", failures),
				slog.Duration("retry_in", delay), slog.Any("error", err)}
			if have != nil {
				attrs = append(attrs, slog.Time("current_expires_at", have.ExpiresAt))
			}
			w.log.Log(ctx, level, "credential refresh failed", attrs...)
			next := w.opts.clock.Now().Add(delay)
			if have != nil && !expiryLogged && have.ExpiresAt.Before(next) {
				if !sleepUntil(ctx, w.opts.clock, have.ExpiresAt) {
					return
				}
				w.log.ErrorContext(ctx, "credential expired and could not be renewed; the file still holds the expired credential",
					slog.String("entitlement", w.cred.Entitlement), slog.String("path", w.cred.Path),
					slog.String("reference", have.Reference), slog.Time("expired_at", have.ExpiresAt))
				expiryLogged = true
			}
			if !sleepUntil(ctx, w.opts.clock, next) {
				return
			}
			continue
		}
		have, failures, expiryLogged = &cred, 0, false
		w.metrics.written(w.cred.Entitlement, cred.ExpiresAt)
		renewAt := cred.RenewTime(fraction, w.opts.jitter)
		w.log.InfoContext(ctx, "credential written",
			slog.String("entitlement", w.cred.Entitlement), slog.String("path", w.cred.Path),
			slog.String("reference", cred.Reference), slog.Time("expires_at", cred.ExpiresAt), slog.Time("renew_at", renewAt))
		w.runHook(ctx, cred)
		if !readyReported {
			readyReported = true
			ready()
		}
		if !sleepUntil(ctx, w.opts.clock, renewAt) {
			return
		}
	}
}

// refresh obtains a new credential and writes the file.
func (w *agentWorker) refresh(ctx context.Context) (client.Credential, error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.requestTimeout)
	defer cancel()
	cred, err := w.client.Issue(ctx, w.cred.Entitlement)
	if err != nil {
		return client.Credential{}, err
	}
	data := make(map[string]string, len(cred.Data))
	for k, v := range cred.Data {
		data[k] = v.Reveal()
	}
	var buf bytes.Buffer
	if err := w.cred.tmpl.Execute(&buf, agentTemplateData{
		GrantID: cred.GrantID, Entitlement: cred.Entitlement, Kind: cred.Kind, Secret: cred.Secret.Reveal(), Data: data,
		Reference: cred.Reference, IssuedAt: cred.IssuedAt, ExpiresAt: cred.ExpiresAt, BreakGlass: cred.BreakGlass,
	}); err != nil {
		return client.Credential{}, fmt.Errorf("render template for %q: %w", w.cred.Entitlement, err)
	}
	if err := writeFileAtomic(w.cred.Path, buf.Bytes()); err != nil {
		return client.Credential{}, err
	}
	return cred, nil
}

// backoff returns the delay before retry n (n ≥ 1): BackoffBase·2^(n-1),
// capped at BackoffMax, then drawn uniformly from its upper half so that
// agents restarted together do not retry in step.
func (w *agentWorker) backoff(n int) time.Duration {
	d := w.opts.backoffMax
	if n < 32 {
		d = min(w.opts.backoffBase<<(n-1), w.opts.backoffMax)
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (w *agentWorker) setLastErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

func (w *agentWorker) lastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// runHook runs the credential's command, if any. A failure is logged, never
// fatal. The command gets WRIT_ENTITLEMENT, WRIT_CREDENTIAL_PATH,
// WRIT_REFERENCE and WRIT_EXPIRES_AT in its environment, never the secret.
func (w *agentWorker) runHook(ctx context.Context, cred client.Credential) {
	if len(w.cred.Command) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.cred.Command[0], w.cred.Command[1:]...)
	cmd.Env = append(os.Environ(),
		"WRIT_ENTITLEMENT="+cred.Entitlement,
		"WRIT_CREDENTIAL_PATH="+w.cred.Path,
		"WRIT_REFERENCE="+cred.Reference,
		"WRIT_EXPIRES_AT="+cred.ExpiresAt.UTC().Format(time.RFC3339))
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 1024 {
			out = out[:1024]
		}
		w.log.ErrorContext(ctx, "credential hook failed",
			slog.String("entitlement", w.cred.Entitlement), slog.Any("command", w.cred.Command),
			slog.Any("error", err), slog.String("output", string(out)))
	}
}

// permanent reports whether err is one that retrying cannot fix: the policy
// refuses this workload, the entitlement does not exist, or the request is
// invalid.
func permanent(err error) bool {
	return errors.Is(err, client.ErrDenied) || errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrInvalid)
}

// sleepUntil waits until clk reaches t or ctx is done, and reports
// whether ctx is still live.
func sleepUntil(ctx context.Context, clk clock.Clock, t time.Time) bool {
	timer := clk.NewTimer(t.Sub(clk.Now()))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C():
		return true
	}
}

// writeFileAtomic replaces path with data, mode 0600: it writes a temporary
// file in the same directory, syncs it and renames it over path, so readers
// see the old file or the new one, never a partial one.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
