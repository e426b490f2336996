// Package oidctest runs a real OpenID provider on loopback for tests.
//
// The provider is zitadel/oidc's certified op package with an in-memory
// storage: one public (native) client that may use the authorization-code
// flow with PKCE, the device-authorization grant (RFC 8628) and refresh
// tokens, and a fixed list of users who sign in on a plain HTML form (what a
// browser driven by chromedp fills in). ID tokens carry a "groups" claim when
// the "groups" scope is asked for.
//
// It is meant for tests only: passwords are compared in plain text and
// nothing is persisted.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is a person who can sign in to the provider.
type User struct {
	// ID is the subject ("sub") of the person's ID tokens.
	ID string
	// Username and Password are typed into the login form.
	Username string
	Password string
	// Email is the "email" claim (with the email scope).
	Email string
	// Groups is the "groups" claim (with the groups scope).
	Groups []string
}

// Config configures a Provider.
type Config struct {
	// ClientID is the public client the CLI uses. Default "writ-cli".
	ClientID string
	// Users who can sign in. Required.
	Users []User
	// IDTokenLifetime is how long ID tokens are valid. Default 5 minutes.
	IDTokenLifetime time.Duration
	// PollInterval is the device flow's polling interval, in whole
	// seconds. Default one second.
	PollInterval time.Duration
}

// Provider is a running OpenID provider.
type Provider struct {
	// Issuer is the provider's issuer URL, http://127.0.0.1:<port>.
	Issuer string
	// ClientID is the public client's ID.
	ClientID string

	store *storage
}

// Start runs a provider until the test ends.
func Start(t testing.TB, cfg Config) *Provider {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID = "writ-cli"
	}
	if cfg.IDTokenLifetime <= 0 {
		cfg.IDTokenLifetime = 5 * time.Minute
	}
	if cfg.PollInterval < time.Second {
		cfg.PollInterval = time.Second
	}
	if len(cfg.Users) == 0 {
		t.Fatal("oidctest: no users")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + lis.Addr().String()

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	store := newStorage(cfg, signingKey{id: randomID(), alg: jose.RS256, key: key})

	var cryptoKey [32]byte
	_, _ = rand.Read(cryptoKey[:])
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:             cryptoKey,
		CryptoKeyId:           "k1",
		CodeMethodS256:        true,
		GrantTypeRefreshToken: true,
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     5 * time.Minute,
			PollInterval: cfg.PollInterval,
			UserFormPath: "/device",
			UserCode:     op.UserCodeBase20,
		},
	}, store, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	interceptor := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	callback := op.AuthCallbackURL(provider)
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		render(w, http.StatusOK, loginPage, map[string]string{"ID": r.URL.Query().Get("authRequestID")})
	})
	mux.Handle("POST /login", interceptor.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PostFormValue("id")
		if err := store.checkLogin(id, r.PostFormValue("username"), r.PostFormValue("password")); err != nil {
			render(w, http.StatusUnauthorized, loginPage, map[string]string{"ID": id, "Error": err.Error()})
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.HandleFunc("GET /device", func(w http.ResponseWriter, r *http.Request) {
		render(w, http.StatusOK, devicePage, map[string]string{"UserCode": r.URL.Query().Get("user_code")})
	})
	mux.HandleFunc("POST /device", func(w http.ResponseWriter, r *http.Request) {
		code := r.PostFormValue("user_code")
		approve := r.PostFormValue("action") == "approve"
		if err := store.decideDevice(code, r.PostFormValue("username"), r.PostFormValue("password"), approve); err != nil {
			render(w, http.StatusUnauthorized, devicePage, map[string]string{"UserCode": code, "Error": err.Error()})
			return
		}
		if approve {
			fmt.Fprintln(w, "<p id=done>Device approved. You can return to your terminal.</p>")
			return
		}
		fmt.Fprintln(w, "<p id=done>Device denied.</p>")
	})
	mux.Handle("/", provider)

	srv := httptest.NewUnstartedServer(mux)
	_ = srv.Listener.Close()
	srv.Listener = lis
	srv.Start()
	t.Cleanup(srv.Close)
	return &Provider{Issuer: issuer, ClientID: cfg.ClientID, store: store}
}

// RefreshTokens returns how many refresh tokens are live (issued, not
// rotated away, not revoked).
func (p *Provider) RefreshTokens() int { return p.store.liveRefreshTokens() }

var (
	loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<title>Sign in</title>
<form method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<p><label>Username <input id="username" name="username" autocomplete="username"></label>
<p><label>Password <input id="password" name="password" type="password"></label>
{{with .Error}}<p id="error">{{.}}{{end}}
<p><button id="submit" type="submit">Sign in</button>
</form>`))
	devicePage = template.Must(template.New("device").Parse(`<!doctype html>
<title>Approve a device</title>
<form method="post" action="/device">
<p><label>Code <input id="user_code" name="user_code" value="{{.UserCode}}"></label>
<p><label>Username <input id="username" name="username"></label>
<p><label>Password <input id="password" name="password" type="password"></label>
{{with .Error}}<p id="error">{{.}}{{end}}
<p><button id="approve" name="action" value="approve" type="submit">Approve</button>
<button id="deny" name="action" value="deny" type="submit">Deny</button>
</form>`))
)

func render(w http.ResponseWriter, status int, t *template.Template, data map[string]string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.Execute(w, data); err != nil {
		slog.Error("oidctest: render", "error", err)
	}
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
