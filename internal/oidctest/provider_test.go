package oidctest_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/writ-dev/writ/internal/oidctest"
)

var bob = oidctest.User{ID: "u-bob", Username: "bob", Password: "pw", Email: "bob@example.org", Groups: []string{"dba"}}

// The provider serves the code flow with PKCE to a loopback redirect on any
// port, puts the groups claim in the ID token, rotates refresh tokens and
// revokes them. The login form is posted without a browser here.
func TestProvider_CodeFlowRefreshRevoke(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.Config{Users: []oidctest.User{bob}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prov, err := gooidc.NewProvider(ctx, p.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Device     string   `json:"device_authorization_endpoint"`
		Revocation string   `json:"revocation_endpoint"`
		Methods    []string `json:"code_challenge_methods_supported"`
	}
	if err := prov.Claims(&meta); err != nil || meta.Device == "" || meta.Revocation == "" || !slices.Contains(meta.Methods, "S256") {
		t.Fatalf("discovery: %+v, %v", meta, err)
	}
	ep := prov.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams
	conf := &oauth2.Config{ClientID: p.ClientID, Endpoint: ep, RedirectURL: "http://127.0.0.1:1234/callback",
		Scopes: []string{"openid", "groups", "offline_access"}}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("n1"))

	// Follow redirects up to the login form, post it, stop at the loopback.
	hc := &http.Client{CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == "127.0.0.1:1234" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := hc.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	if resp.Request.URL.Path != "/login" || id == "" {
		t.Fatalf("authorize led to %s", resp.Request.URL)
	}
	resp, err = hc.PostForm(p.Issuer+"/login", url.Values{"id": {id}, "username": {"bob"}, "password": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %s", resp.Status)
	}
	resp, err = hc.PostForm(p.Issuer+"/login", url.Values{"id": {id}, "username": {"bob"}, "password": {"pw"}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("no redirect to the client: %s", resp.Status)
	}
	if loc.Query().Get("state") != "st" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect %s", loc)
	}

	if _, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption("not-the-verifier-"+strings.Repeat("x", 30))); err == nil {
		t.Fatal("a wrong PKCE verifier was accepted")
	}
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := prov.Verifier(&gooidc.Config{ClientID: p.ClientID}).Verify(ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Groups []string `json:"groups"`
	}
	if err := idt.Claims(&claims); err != nil || idt.Subject != bob.ID || idt.Nonce != "n1" || !slices.Equal(claims.Groups, bob.Groups) {
		t.Fatalf("ID token: sub %q nonce %q groups %v (%v)", idt.Subject, idt.Nonce, claims.Groups, err)
	}
	if tok.RefreshToken == "" || p.RefreshTokens() != 1 {
		t.Fatalf("refresh token %q, live %d", tok.RefreshToken, p.RefreshTokens())
	}

	// Rotation: the new refresh token replaces the old one.
	next, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if next.RefreshToken == tok.RefreshToken || next.Extra("id_token") == nil {
		t.Fatal("refresh did not rotate or returned no ID token")
	}
	_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("the rotated-away refresh token: %v", err)
	}

	resp, err = http.PostForm(meta.Revocation, url.Values{"token": {next.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {p.ClientID}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || p.RefreshTokens() != 0 {
		t.Fatalf("revoke: %s, live %d", resp.Status, p.RefreshTokens())
	}
}
