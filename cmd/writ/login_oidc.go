package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"slices"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultScopes are asked for when --scopes is not given: the person's
// identity and groups, and offline_access so that the provider issues a
// refresh token the CLI can renew the ID token with.
var defaultScopes = []string{gooidc.ScopeOpenID, "profile", "email", "groups", gooidc.ScopeOfflineAccess}

// refreshMargin is how long before the ID token expires the CLI renews it.
const refreshMargin = time.Minute

// timeNow is the CLI's clock for deciding when to renew an ID token. Tests
// replace it.
var timeNow = time.Now

// oidcClient signs a person in with their OpenID provider: the
// authorization-code flow with PKCE on a loopback redirect (RFC 8252), or
// the device-authorization grant (RFC 8628).
type oidcClient struct {
	// Issuer is the provider's issuer URL.
	Issuer string
	// ClientID is the public client registered for the CLI; ID tokens must
	// be issued to it.
	ClientID string
	// Scopes asked for; "openid" is always included.
	Scopes []string
	// OpenURL shows the person the sign-in page (the browser flow).
	OpenURL func(url string) error
	// ShowDeviceCode tells the person where to enter the user code (the
	// device flow).
	ShowDeviceCode func(da *oauth2.DeviceAuthResponse)
}

// signIn is the outcome of a sign-in or a renewal.
type signIn struct {
	IDToken      string
	RefreshToken string
	Expiry       time.Time
	Subject      string
}

// setup discovers the provider and returns it with the OAuth 2.0 client
// configuration for redirectURL.
func (c *oidcClient) setup(ctx context.Context, redirectURL string) (*gooidc.Provider, *oauth2.Config, error) {
	if c.Issuer == "" || c.ClientID == "" {
		return nil, nil, fmt.Errorf("--issuer and --client-id are needed to sign in with your identity provider: %w", errUsage)
	}
	p, err := gooidc.NewProvider(ctx, c.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("identity provider %s: %w", c.Issuer, err)
	}
	scopes := c.Scopes
	if len(scopes) == 0 {
		scopes = defaultScopes
	}
	if !slices.Contains(scopes, gooidc.ScopeOpenID) {
		scopes = append([]string{gooidc.ScopeOpenID}, scopes...)
	}
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams // a public client: no secret
	return p, &oauth2.Config{ClientID: c.ClientID, Endpoint: ep, RedirectURL: redirectURL, Scopes: scopes}, nil
}

// verify checks the ID token in tok against the provider's keys, the issuer
// and the audience (the client ID), and the nonce when one was sent.
func (c *oidcClient) verify(ctx context.Context, p *gooidc.Provider, tok *oauth2.Token, nonce string) (signIn, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return signIn{}, errors.New("the identity provider returned no ID token (is the openid scope allowed for this client?)")
	}
	idt, err := p.Verifier(&gooidc.Config{ClientID: c.ClientID}).Verify(ctx, raw)
	if err != nil {
		return signIn{}, fmt.Errorf("ID token from %s: %w", c.Issuer, err)
	}
	if nonce != "" && idt.Nonce != nonce {
		return signIn{}, errors.New("ID token nonce does not match this sign-in: refusing it")
	}
	return signIn{IDToken: raw, RefreshToken: tok.RefreshToken, Expiry: idt.Expiry, Subject: idt.Subject}, nil
}

// Browser runs the authorization-code flow with PKCE (S256): it listens on
// a random loopback port, shows the person the provider's sign-in page and
// waits for the provider to redirect back with a code.
func (c *oidcClient) Browser(ctx context.Context) (signIn, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return signIn{}, fmt.Errorf("listen for the sign-in redirect: %w", err)
	}
	defer lis.Close()
	redirect := fmt.Sprintf("http://%s/callback", lis.Addr())
	p, conf, err := c.setup(ctx, redirect)
	if err != nil {
		return signIn{}, err
	}
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()

	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var res result
		switch {
		case q.Get("state") != state:
			http.Error(w, "This sign-in does not match the one writ started. Close this window.", http.StatusBadRequest)
			return // a stray or forged redirect: keep waiting for the real one
		case q.Get("error") != "":
			res.err = fmt.Errorf("identity provider refused the sign-in: %s %s", q.Get("error"), q.Get("error_description"))
		case q.Get("code") == "":
			res.err = errors.New("identity provider redirected back without a code")
		default:
			res.code = q.Get("code")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if res.err != nil {
			fmt.Fprintf(w, "<!doctype html><title>writ</title><p id=result>Sign-in failed: %s</p>", html.EscapeString(res.err.Error()))
		} else {
			fmt.Fprint(w, "<!doctype html><title>writ</title><p id=result>Signed in. You can close this window and return to the terminal.</p>")
		}
		select {
		case done <- res:
		default:
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	// Shutdown, not Close: the browser must receive the page the callback
	// wrote before the server goes away (Close cut it off mid-response).
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), gooidc.Nonce(nonce))
	if err := c.OpenURL(authURL); err != nil {
		return signIn{}, err
	}
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		return signIn{}, fmt.Errorf("waiting for the browser sign-in: %w", context.Cause(ctx))
	}
	if res.err != nil {
		return signIn{}, res.err
	}
	tok, err := conf.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return signIn{}, fmt.Errorf("exchange the sign-in code: %w", err)
	}
	return c.verify(ctx, p, tok, nonce)
}

// Device runs the device-authorization grant: it shows the person a URL and
// a code to enter on any device, then polls the provider as RFC 8628 says
// (honouring the interval and slow_down) until they approve, deny, or the
// code expires.
func (c *oidcClient) Device(ctx context.Context) (signIn, error) {
	p, conf, err := c.setup(ctx, "")
	if err != nil {
		return signIn{}, err
	}
	if conf.Endpoint.DeviceAuthURL == "" {
		return signIn{}, fmt.Errorf("identity provider %s does not offer the device flow (no device_authorization_endpoint); use the browser sign-in", c.Issuer)
	}
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return signIn{}, fmt.Errorf("start device sign-in: %w", err)
	}
	c.ShowDeviceCode(da)
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return signIn{}, fmt.Errorf("device sign-in: %w", err)
	}
	return c.verify(ctx, p, tok, "")
}

// Refresh renews the ID token with a refresh token.
func (c *oidcClient) Refresh(ctx context.Context, refreshToken string) (signIn, error) {
	p, conf, err := c.setup(ctx, "")
	if err != nil {
		return signIn{}, err
	}
	tok, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return signIn{}, err
	}
	s, err := c.verify(ctx, p, tok, "")
	if err != nil {
		return signIn{}, err
	}
	if s.RefreshToken == "" { // providers that do not rotate keep the old one valid
		s.RefreshToken = refreshToken
	}
	return s, nil
}

// renewIfDue renews p's ID token when it expires within refreshMargin and p
// holds a refresh token, and saves the profile. It fails closed: when the
// renewal fails the person is told to sign in again.
func renewIfDue(ctx context.Context, name string, p profile) (profile, error) {
	if p.RefreshToken == "" || p.Issuer == "" || p.Expiry.IsZero() || timeNow().Add(refreshMargin).Before(p.Expiry) {
		return p, nil
	}
	c := &oidcClient{Issuer: p.Issuer, ClientID: p.ClientID, Scopes: p.Scopes}
	s, err := c.Refresh(ctx, p.RefreshToken)
	if err != nil {
		// Another writ command may have renewed first: providers that
		// rotate refresh tokens then refuse the old one.
		if q, lerr := loadProfile(name); lerr == nil && q.RefreshToken != p.RefreshToken && q.Token != "" && timeNow().Before(q.Expiry) {
			return q, nil
		}
		return profile{}, status.Errorf(codes.Unauthenticated,
			"the sign-in stored in profile %q has expired and could not be renewed (%v): run `writ login --profile %s` again", name, err, name)
	}
	p.Token, p.RefreshToken, p.Expiry = s.IDToken, s.RefreshToken, s.Expiry
	if _, err := saveProfile(name, p); err != nil {
		return profile{}, fmt.Errorf("save renewed sign-in: %w", err)
	}
	return p, nil
}

// openBrowser opens url with the desktop's browser.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("open a browser (%v): use --no-browser and open the printed URL yourself, or --device", err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// printURL is --no-browser: the person opens the URL themselves.
func printURL(w io.Writer) func(string) error {
	return func(url string) error {
		fmt.Fprintf(w, "Open this URL in a browser on this machine to sign in:\n\n  %s\n\n", url)
		return nil
	}
}

func showDeviceCode(w io.Writer) func(*oauth2.DeviceAuthResponse) {
	return func(da *oauth2.DeviceAuthResponse) {
		fmt.Fprintf(w, "To sign in, open %s on any device and enter the code\n\n  %s\n\n", da.VerificationURI, da.UserCode)
		if da.VerificationURIComplete != "" {
			fmt.Fprintf(w, "(or open %s)\n", da.VerificationURIComplete)
		}
		fmt.Fprintln(w, "Waiting for you to approve...")
	}
}

func randomString() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
