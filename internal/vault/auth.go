package vault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// Backoff bounds for logging in again after the token was lost.
const (
	loginBaseWait = 500 * time.Millisecond
	loginMaxWait  = 30 * time.Second
)

// logIn logs in with the configured method and installs the new token.
func (c *Client) logIn(ctx context.Context) (*api.Secret, error) {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	return c.logInLocked(ctx)
}

// logInLocked is logIn for a caller holding c.loginMu.
func (c *Client) logInLocked(ctx context.Context) (*api.Secret, error) {
	path := "auth/" + c.auth.MountPath + "/login"
	data := map[string]any{}
	switch c.auth.Method {
	case AuthAppRole:
		data["role_id"] = c.auth.RoleID
		if c.auth.SecretID != "" {
			data["secret_id"] = c.auth.SecretID
		}
	case AuthCert:
		if c.auth.CertRole != "" {
			data["name"] = c.auth.CertRole
		}
		// Vault authenticates the certificate of the TLS connection that
		// carries the login: start a new handshake, so a rotated
		// certificate is the one presented.
		c.transport.CloseIdleConnections()
	}
	var secret *api.Secret
	err := c.do(ctx, op{name: "log in to vault with " + c.auth.Method, path: path, capability: "update", login: true}, func(ctx context.Context) error {
		s, err := c.login.Logical().WriteWithContext(ctx, path, data)
		secret = s
		return err
	})
	if err != nil {
		return nil, err
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return nil, fmt.Errorf("log in to vault with %s: %q: vault returned no token", c.auth.Method, path)
	}
	c.api.SetToken(secret.Auth.ClientToken)
	select {
	case <-c.fresh: // an older login the renewal goroutine has not picked up
	default:
	}
	lease := time.Duration(secret.Auth.LeaseDuration) * time.Second
	c.mu.Lock()
	c.gen++
	c.lost = false
	c.expires = time.Time{}
	if lease > 0 {
		c.expires = c.now().Add(lease)
	}
	c.mu.Unlock()
	c.log.InfoContext(ctx, "vault login succeeded", "method", c.auth.Method, "accessor", secret.Auth.Accessor,
		"ttl", lease, "renewable", secret.Auth.Renewable)
	return secret, nil
}

// loginRefusals are Vault 1.13's messages for credentials it refuses with a
// 500 rather than a 4xx.
var loginRefusals = []string{"invalid secret id", "invalid role id", "invalid role or secret id", "missing name in alias"}

// classifyLogin classifies the error of a login request: Vault refusing the
// credentials (400, 401, 403, or a 500 with one of loginRefusals) is
// ErrDenied, naming the auth mount.
func classifyLogin(name, path string, err error) error {
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return classify(name, path, "update", err)
	}
	refused := re.StatusCode == 400 || re.StatusCode == 401 || re.StatusCode == 403
	hint := ""
	for _, e := range re.Errors {
		e = strings.ToLower(e)
		for _, r := range loginRefusals {
			refused = refused || strings.Contains(e, r)
		}
		if strings.Contains(e, "missing name in alias") {
			// hashicorp/vault#6820: the alias name is the certificate's CN.
			hint = " (Vault's cert auth needs a client certificate with a subject common name; an X509-SVID without one cannot log in)"
		}
	}
	if refused {
		return fmt.Errorf("%s: %q: vault refused the credentials%s: %w: %w", name, path, hint, ErrDenied, responseError{re})
	}
	return classify(name, path, "update", err)
}

// maintain keeps the client's token alive until ctx ends: it renews the
// token while Vault allows, logs in again when the token reaches its
// maximum TTL, when renewal fails or when a request found it lost, and logs
// in with backoff until that works.
func (c *Client) maintain(ctx context.Context, secret *api.Secret) {
	defer close(c.done)
	for {
		next, err := c.watch(ctx, secret)
		switch {
		case ctx.Err() != nil:
			return
		case next != nil:
			secret = next
			continue
		case err != nil:
			c.log.WarnContext(ctx, "vault token renewal failed; logging in again", "error", err)
			c.notifyFailure(fmt.Errorf("renew vault token: %w", err))
		default:
			c.log.InfoContext(ctx, "vault token reached the end of its ttl; logging in again")
		}
		if secret = c.relogin(ctx); secret == nil {
			return
		}
	}
}

// watch renews secret's token until it can be renewed no more (nil error),
// renewal fails (the error), a login elsewhere replaced it (the new secret)
// or ctx ends.
func (c *Client) watch(ctx context.Context, secret *api.Secret) (*api.Secret, error) {
	lease := time.Duration(secret.Auth.LeaseDuration) * time.Second
	if !secret.Auth.Renewable || lease <= 0 {
		var end <-chan time.Time
		if lease > 0 {
			// Log in again before the token expires.
			t := time.NewTimer(lease - max(lease/5, min(time.Second, lease/2)))
			defer t.Stop()
			end = t.C
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case s := <-c.fresh:
			return s, nil
		case <-end:
			return nil, nil
		}
	}
	w, err := c.api.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret, RenewBehavior: api.RenewBehaviorErrorOnErrors})
	if err != nil {
		return nil, err
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case s := <-c.fresh:
			return s, nil
		case err := <-w.DoneCh():
			return nil, err
		case r := <-w.RenewCh():
			if r.Secret == nil || r.Secret.Auth == nil {
				continue
			}
			ttl := time.Duration(r.Secret.Auth.LeaseDuration) * time.Second
			c.mu.Lock()
			c.expires = c.now().Add(ttl)
			c.mu.Unlock()
			c.log.DebugContext(ctx, "vault token renewed", "ttl", ttl)
		}
	}
}

// relogin logs in until it works, with exponential backoff and full jitter,
// and returns the new secret, or nil when ctx ends.
func (c *Client) relogin(ctx context.Context) *api.Secret {
	for attempt := 0; ; attempt++ {
		secret, err := c.logIn(ctx)
		if err == nil {
			return secret
		}
		if ctx.Err() != nil {
			return nil
		}
		c.mu.Lock()
		c.lost = true
		c.mu.Unlock()
		c.log.WarnContext(ctx, "vault login failed; will retry", "attempt", attempt+1, "error", err)
		c.notifyFailure(err)
		t := time.NewTimer(rand.N(min(loginMaxWait, loginBaseWait<<min(attempt, 6))))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case s := <-c.fresh:
			t.Stop()
			return s
		case <-t.C:
		}
	}
}

// recoverToken is called after a request made with login generation gen
// was denied. It reports whether the request should be repeated: when
// another login happened since, or when Writ's token turns out to be gone
// (lookup-self is denied too) and a new login succeeded.
func (c *Client) recoverToken(ctx context.Context, gen uint64) bool {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	if c.generation() != gen {
		return true
	}
	lctx, cancel := context.WithTimeout(ctx, c.timeout)
	_, err := c.api.Auth().Token().LookupSelfWithContext(lctx)
	cancel()
	var re *api.ResponseError
	if err == nil || !errors.As(err, &re) || re.StatusCode != 403 {
		// The token works (a genuine denial), or Vault cannot tell now.
		return false
	}
	c.mu.Lock()
	c.lost = true
	c.mu.Unlock()
	c.log.WarnContext(ctx, "vault token expired or revoked; logging in again")
	secret, err := c.logInLocked(ctx)
	if err != nil {
		c.log.WarnContext(ctx, "vault login failed", "error", err)
		c.notifyFailure(err)
		return false
	}
	// Hand the new token to the renewal goroutine, replacing any older one
	// it has not picked up.
	select {
	case <-c.fresh:
	default:
	}
	c.fresh <- secret
	return true
}

// notifyFailure calls the OnRenewFailure hook, if any.
func (c *Client) notifyFailure(err error) {
	if c.onFailure != nil {
		c.onFailure(err)
	}
}
