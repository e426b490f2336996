package main

// These tests sign a person in against a real OpenID provider
// (internal/oidctest: zitadel/oidc's certified op package on loopback),
// drive its sign-in pages in headless Chromium, and check the result against
// a real broker admin listener that verifies the ID tokens with
// internal/oidc. They change the environment (XDG_CONFIG_HOME, the working
// directory) and the CLI's clock, so they do not run in parallel.

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/oidc"
	"github.com/writ-dev/writ/internal/oidctest"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/testenv"
)

var alice = oidctest.User{ID: "u-alice", Username: "alice", Password: "correct horse", Email: "alice@example.org", Groups: []string{"dba", "oncall"}}

// peopleEnv is an identity provider and a broker admin listener that trusts
// it, with the CLI's config directory and working directory set aside.
type peopleEnv struct {
	prov      *oidctest.Provider
	adminAddr string
	bundleDir string // holds bundle.pem; the working directory at login
}

func startPeopleEnv(t *testing.T) *peopleEnv {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	for _, k := range []string{"WRIT_PROFILE", "WRIT_TOKEN", "WRIT_ADMIN", "WRIT_BROKER_ID", "WRIT_BUNDLE", "WRIT_OIDC_ISSUER", "WRIT_OIDC_CLIENT_ID"} {
		t.Setenv(k, "")
	}
	prov := oidctest.Start(t, oidctest.Config{Users: []oidctest.User{alice}})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := oidc.New(ctx, oidc.Config{Issuer: prov.Issuer, Audience: prov.ClientID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })

	ca, err := devca.New(agentTD, devca.WithNow(time.Now))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("policy.yaml", []byte(agentPolicy))
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ledger, err := audit.New(audit.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Config{Policy: pol, Ledger: ledger, Logger: slog.New(slog.DiscardHandler),
		People:  oidcPeople{v},
		Issuers: map[approval.CredentialKind]broker.Issuer{approval.KindJWT: &countingIssuer{}}})
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(agentBrokerID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := devca.WriteSVID(filepath.Join(t.TempDir(), "writd"), svid, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(agentMemSource{SVID: svid, Bundle: ca.Bundle()}))),
		grpc.ChainUnaryInterceptor(srv.PersonUnaryInterceptor()), grpc.ChainStreamInterceptor(srv.PersonStreamInterceptor()))
	srv.RegisterAdmin(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return &peopleEnv{prov: prov, adminAddr: lis.Addr().String(), bundleDir: filepath.Dir(files.Bundle)}
}

// oidcPeople adapts the OIDC verifier to the broker, as writd does.
type oidcPeople struct{ v *oidc.Verifier }

func (p oidcPeople) VerifyPerson(ctx context.Context, token string) (broker.Person, error) {
	person, err := p.v.Verify(ctx, token)
	if err != nil {
		return broker.Person{}, err
	}
	return broker.Person{Principal: person.Principal(), Groups: person.Groups, Expires: person.Expires}, nil
}

// loginArgs are `writ login` with a relative --bundle, run from bundleDir.
func (e *peopleEnv) loginArgs(extra ...string) []string {
	return append([]string{"login", "--profile", "alice", "--issuer", e.prov.Issuer, "--client-id", e.prov.ClientID,
		"--admin", e.adminAddr, "--broker-id", agentBrokerID.String(), "--bundle", "bundle.pem"}, extra...)
}

func (e *peopleEnv) principal() string { return "oidc:" + e.prov.Issuer + "#" + alice.ID }

// watchedOutput is stdout shared between the command and the test, which
// waits for a line to appear.
type watchedOutput struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newWatchedOutput() *watchedOutput { return &watchedOutput{changed: make(chan struct{}, 1)} }

func (w *watchedOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	return w.b.Write(p)
}

func (w *watchedOutput) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.b.String() }

// waitFor returns the first submatch of re once the output contains it.
func (w *watchedOutput) waitFor(t *testing.T, re *regexp.Regexp, done <-chan error) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(w.String()); m != nil {
			return m[1]
		}
		select {
		case <-w.changed:
		case err := <-done:
			t.Fatalf("command ended (%v) before printing %s; output:\n%s", err, re, w.String())
		case <-deadline:
			t.Fatalf("no %s in output:\n%s", re, w.String())
		}
	}
}

// startCLI runs writ args in the background.
func startCLI(args ...string) (*watchedOutput, *bytes.Buffer, <-chan error) {
	out, errOut := newWatchedOutput(), &bytes.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), args, out, errOut) }()
	return out, errOut, done
}

func wait(t *testing.T, done <-chan error, out *watchedOutput, errOut *bytes.Buffer) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("writ: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("writ did not finish; stdout:\n%s", out)
	}
}

// runCLI runs writ args to completion.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

// browser starts headless Chromium with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("WRIT_CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			testenv.Missing(t, "chromium", "install the Debian package chromium, or set WRIT_CHROMIUM to a Chromium binary")
		}
	}
	// Chromium's helper processes may still write to its directory after
	// it exits, so the directory is not a t.TempDir (whose cleanup fails
	// on a non-empty directory); it is removed on a best-effort basis.
	dir, err := os.MkdirTemp("", "writ-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A best-effort poll on a condition of another process (Chromium's
		// helpers exiting); no clock to inject, and no failure if it stays.
		for range 5 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(filepath.Join(dir, "data")),
		chromedp.Env("HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache")),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true))
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return ctx
}

func readProfile(t *testing.T, name string) profile {
	t.Helper()
	p, err := loadProfile(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var authURLLine = regexp.MustCompile(`(?m)^\s+(http://\S+/authorize\S*)$`)

// loginInBrowser runs `writ login --no-browser` and signs alice in on the
// provider's page in Chromium, as a person would.
func loginInBrowser(t *testing.T, e *peopleEnv, bctx context.Context) string {
	t.Helper()
	out, errOut, done := startCLI(e.loginArgs("--no-browser")...)
	authURL := out.waitFor(t, authURLLine, done)

	// A redirect that does not carry this sign-in's state is refused and
	// the CLI keeps waiting for the real one.
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
		t.Fatalf("auth URL lacks PKCE S256, nonce or state: %s", authURL)
	}
	redirect := q.Get("redirect_uri")
	if !strings.HasPrefix(redirect, "http://127.0.0.1:") || !strings.HasSuffix(redirect, "/callback") {
		t.Fatalf("redirect_uri %q is not a loopback callback", redirect)
	}
	resp, err := http.Get(redirect + "?state=forged&code=stolen")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged redirect: %s, want 400", resp.Status)
	}

	var result string
	if err := chromedp.Run(bctx,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.SendKeys("#username", alice.Username, chromedp.ByID),
		chromedp.SendKeys("#password", alice.Password, chromedp.ByID),
		chromedp.Click("#submit", chromedp.ByID),
		chromedp.WaitVisible("#result", chromedp.ByID),
		chromedp.Text("#result", &result, chromedp.ByID),
	); err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !strings.HasPrefix(result, "Signed in.") {
		t.Fatalf("callback page: %q", result)
	}
	wait(t, done, out, errOut)
	return out.String()
}

// Browser sign-in (authorization code + PKCE on a loopback redirect) in a
// real browser, then whoami from another directory, silent renewal before
// expiry, a refused renewal, profiles, the device flow, and logout with
// revocation at the provider. One provider, broker and browser serve the
// steps, which run in order.
func TestLogin(t *testing.T) {
	e := startPeopleEnv(t)
	bctx := browser(t)
	t.Chdir(e.bundleDir)

	out := loginInBrowser(t, e, bctx)
	if want := "logged in as " + e.principal() + " (groups: dba, oncall)"; !strings.Contains(out, want) {
		t.Fatalf("login output %q lacks %q", out, want)
	}

	// The profile: 0600 in a 0700 directory, the bundle path absolute,
	// a refresh token kept.
	path, err := profilePath("alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{path, 0o600}, {filepath.Dir(path), 0o700}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode().Perm(), c.mode)
		}
	}
	p := readProfile(t, "alice")
	if want := filepath.Join(e.bundleDir, "bundle.pem"); p.Bundle != want {
		t.Errorf("profile bundle %q, want the absolute %q", p.Bundle, want)
	}
	if p.RefreshToken == "" || p.Token == "" || p.Expiry.IsZero() {
		t.Fatalf("profile lacks tokens or expiry: refresh %t, id %t, expiry %v", p.RefreshToken != "", p.Token != "", p.Expiry)
	}

	// From another directory: the stored paths still work.
	t.Chdir(t.TempDir())
	who, err := runCLI(t, "whoami", "--profile", "alice")
	if err != nil {
		t.Fatalf("whoami: %v: %s", err, who)
	}
	if !strings.Contains(who, e.principal()+" (groups: dba, oncall;") {
		t.Errorf("whoami: %q", who)
	}

	t.Run("renews the ID token before it expires", func(t *testing.T) {
		// The CLI's clock says the ID token expires within the margin.
		timeNow = func() time.Time { return p.Expiry.Add(-refreshMargin / 2) }
		t.Cleanup(func() { timeNow = time.Now })
		who, err := runCLI(t, "whoami", "--profile", "alice")
		if err != nil {
			t.Fatalf("whoami: %v: %s", err, who)
		}
		renewed := readProfile(t, "alice")
		if renewed.Token == p.Token || renewed.RefreshToken == p.RefreshToken || renewed.RefreshToken == "" {
			t.Fatal("the profile's tokens were not renewed")
		}
		if n := e.prov.RefreshTokens(); n != 1 {
			t.Errorf("provider holds %d live refresh tokens, want 1 (rotation)", n)
		}
		p = renewed
	})

	t.Run("a renewal another command did first is used", func(t *testing.T) {
		// Two commands renew at once; the provider rotates refresh tokens,
		// so the slower one's token is refused: it uses the profile the
		// faster one saved.
		stale := p
		timeNow = func() time.Time { return p.Expiry.Add(-refreshMargin / 2) }
		t.Cleanup(func() { timeNow = time.Now })
		if _, err := runCLI(t, "whoami", "--profile", "alice"); err != nil {
			t.Fatal(err)
		}
		fresh := readProfile(t, "alice")
		got, err := renewIfDue(context.Background(), "alice", stale)
		if err != nil {
			t.Fatalf("slower renewal: %v", err)
		}
		if got.Token != fresh.Token || got.RefreshToken != fresh.RefreshToken {
			t.Error("the slower renewal did not use the saved profile")
		}
		p = fresh
	})

	t.Run("profiles lists the sign-in without tokens", func(t *testing.T) {
		t.Setenv("WRIT_PROFILE", "alice")
		out, err := runCLI(t, "profiles", "-o", "json")
		if err != nil {
			t.Fatalf("profiles: %v: %s", err, out)
		}
		if strings.Contains(out, p.Token) || strings.Contains(out, p.RefreshToken) {
			t.Fatal("profiles prints a token")
		}
		var got struct{ Profiles []profileSummary }
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if len(got.Profiles) != 1 {
			t.Fatalf("profiles: %s", out)
		}
		r := got.Profiles[0]
		if r.Name != "alice" || !r.Current || r.Principal != e.principal() || r.Status != "valid" || !r.Renewable || r.Issuer != e.prov.Issuer {
			t.Errorf("profile row %+v", r)
		}
		table, err := runCLI(t, "profiles")
		if err != nil || !strings.Contains(table, "*  alice") || !strings.Contains(table, e.principal()) {
			t.Errorf("profiles table (%v):\n%s", err, table)
		}
	})

	t.Run("a renewal the provider refuses fails closed", func(t *testing.T) {
		// Exit 3 (not authenticated) with a message saying to sign in again.
		bad := p
		bad.RefreshToken = "revoked-or-unknown"
		if _, err := saveProfile("alice", bad); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := saveProfile("alice", p); err != nil {
				t.Error(err)
			}
		})
		timeNow = func() time.Time { return p.Expiry.Add(time.Second) }
		t.Cleanup(func() { timeNow = time.Now })
		_, err := runCLI(t, "whoami", "--profile", "alice")
		if err == nil {
			t.Fatal("whoami with an unusable refresh token succeeded")
		}
		if exitCode(err) != exitDenied || !strings.Contains(friendly(err), "run `writ login --profile alice` again") {
			t.Errorf("exit %d, %q", exitCode(err), friendly(err))
		}
		if readProfile(t, "alice").Token != p.Token {
			t.Error("a failed renewal changed the stored token")
		}
	})

	t.Run("device flow: the person approves a code on another device", func(t *testing.T) {
		// RFC 8628: the CLI prints a code, the person approves it on the
		// provider's device page, the CLI's polling completes.
		t.Chdir(e.bundleDir)
		out, errOut, done := startCLI(e.loginArgs("--device", "--profile", "alice-device")...)
		complete := out.waitFor(t, deviceURLLine, done)
		if !strings.Contains(out.String(), "enter the code") {
			t.Errorf("device instructions: %q", out.String())
		}
		var msg string
		if err := chromedp.Run(bctx,
			chromedp.Navigate(complete),
			chromedp.WaitVisible("#username", chromedp.ByID),
			chromedp.SendKeys("#username", alice.Username, chromedp.ByID),
			chromedp.SendKeys("#password", alice.Password, chromedp.ByID),
			chromedp.Click("#approve", chromedp.ByID),
			chromedp.WaitVisible("#done", chromedp.ByID),
			chromedp.Text("#done", &msg, chromedp.ByID),
		); err != nil {
			t.Fatalf("browser: %v", err)
		}
		wait(t, done, out, errOut)
		if want := "logged in as " + e.principal() + " (groups: dba, oncall)"; !strings.Contains(out.String(), want) {
			t.Fatalf("login output %q lacks %q", out.String(), want)
		}
		dp := readProfile(t, "alice-device")
		if dp.RefreshToken == "" {
			t.Error("device sign-in kept no refresh token")
		}
		// Back to one live refresh token, as the logout below expects.
		if _, err := runCLI(t, "logout", "--profile", "alice-device"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("logout revokes the refresh token and forgets the tokens", func(t *testing.T) {
		out, err := runCLI(t, "logout", "--profile", "alice")
		if err != nil {
			t.Fatalf("logout: %v: %s", err, out)
		}
		if !strings.Contains(out, "refresh token revoked at "+e.prov.Issuer) {
			t.Errorf("logout: %q", out)
		}
		if n := e.prov.RefreshTokens(); n != 0 {
			t.Errorf("provider still holds %d refresh tokens", n)
		}
		left := readProfile(t, "alice")
		if left.Token != "" || left.RefreshToken != "" || left.Admin != e.adminAddr || left.Issuer != e.prov.Issuer {
			t.Errorf("after logout: token %t, refresh %t, admin %q, issuer %q", left.Token != "", left.RefreshToken != "", left.Admin, left.Issuer)
		}
		_, err = runCLI(t, "whoami", "--profile", "alice")
		if err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "run `writ login` first") {
			t.Errorf("whoami after logout: exit %d, %v", exitCode(err), err)
		}
	})
}

var deviceURLLine = regexp.MustCompile(`\(or open (http://\S+)\)`)

// When the person or the provider refuses, login fails and saves nothing:
// an error on the loopback redirect (browser flow), a denied device code.
// No browser is needed: the refusals are sent as the provider would.
func TestLogin_Refused(t *testing.T) {
	e := startPeopleEnv(t)
	t.Chdir(e.bundleDir)

	t.Run("browser flow: error on the redirect", func(t *testing.T) {
		out, _, done := startCLI(e.loginArgs("--no-browser")...)
		u, err := url.Parse(out.waitFor(t, authURLLine, done))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		resp, err := http.Get(q.Get("redirect_uri") + "?" + url.Values{"state": {q.Get("state")}, "error": {"access_denied"}, "error_description": {"user cancelled"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		err = <-done
		if err == nil || !strings.Contains(err.Error(), "refused the sign-in: access_denied user cancelled") {
			t.Fatalf("login: %v", err)
		}
	})

	t.Run("device flow: the person denies the code", func(t *testing.T) {
		out, _, done := startCLI(e.loginArgs("--device")...)
		complete, err := url.Parse(out.waitFor(t, deviceURLLine, done))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.PostForm(e.prov.Issuer+"/device", url.Values{"user_code": {complete.Query().Get("user_code")},
			"username": {alice.Username}, "password": {alice.Password}, "action": {"deny"}})
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("deny: %s", resp.Status)
		}
		err = <-done
		if err == nil || !strings.Contains(err.Error(), "access_denied") {
			t.Fatalf("login: %v", err)
		}
	})

	if p := readProfile(t, "alice"); p.Token != "" || p.RefreshToken != "" {
		t.Error("a refused login saved tokens")
	}
}

// Usage errors need no provider.
func TestLogin_Usage(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("WRIT_TOKEN", "")
	t.Setenv("WRIT_OIDC_ISSUER", "")
	t.Setenv("WRIT_OIDC_CLIENT_ID", "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no issuer and no token", []string{"login"}, "--issuer URL --client-id ID"},
		{"device with a token file", []string{"login", "--device", "--token-file", "x"}, "none of the others can be"},
		{"bad output", []string{"profiles", "-o", "yaml"}, "use table or json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCLI(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
			if tt.name != "device with a token file" && exitCode(err) != exitUsage {
				t.Errorf("exit %d, want %d", exitCode(err), exitUsage)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Version   string `json:"version"`
		GoVersion string `json:"go_version"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version == "" || !strings.HasPrefix(v.GoVersion, "go") {
		t.Errorf("version -o json: %q (%v)", out, err)
	}
	out, err = runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "writ ") {
		t.Errorf("version: %q (%v)", out, err)
	}
}
