package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// buildBinaries compiles writd and writ into a temporary directory.
func buildBinaries(t *testing.T) (writd, writ string) {
	t.Helper()
	dir := t.TempDir()
	writd, writ = filepath.Join(dir, "writd"), filepath.Join(dir, "writ")
	for out, pkg := range map[string]string{writd: ".", writ: "../writ"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return writd, writ
}

// TestQuickstart follows the README: it runs `writd dev`, then every command
// writd prints, with the built writ binary in place of `go run ./cmd/writ`.
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	writd, writ := buildBinaries(t)
	dataDir := filepath.Join(t.TempDir(), "writ-dev")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	daemon := exec.CommandContext(ctx, writd, "dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	stdout, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	daemon.Stderr = &logs
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = daemon.Process.Kill()
		if t.Failed() {
			t.Logf("writd logs:\n%s", logs.String())
		}
	}()

	// Read the printed lines up to the last command (audit verify): the
	// commands, and the exports they rely on.
	var commands []string
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "export "); ok {
			commands = append(commands, "export "+rest)
		}
		if rest, ok := strings.CutPrefix(line, "go run ./cmd/writ "); ok {
			commands = append(commands, rest)
			if strings.HasPrefix(rest, "audit verify") {
				break
			}
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if len(commands) < 10 {
		t.Fatalf("writd dev printed %d commands, want at least 10: %q\nlogs:\n%s", len(commands), commands, logs.String())
	}

	var jwksURL, token, requestID, breakGlassID string
	approvals := 0
	for _, c := range commands {
		if exports, ok := strings.CutPrefix(c, "export "); ok {
			env = append(env, strings.Fields(exports)...)
			continue
		}
		c = strings.ReplaceAll(c, "REQUEST_ID", requestID)
		c = strings.ReplaceAll(c, "BREAKGLASS_ID", breakGlassID)
		args := splitArgs(c)
		switch {
		case args[0] == "audit":
			continue // after shutdown, below
		case args[0] == "jwks":
			jwksURL = args[2]
		case args[0] == "approve" && approvals == 0:
			// Before any approval the workload gets nothing (FAILED_PRECONDITION).
			out, code := runWrit(t, writ, env, "credential", "--entitlement", "demo-approved", "--broker", flagValue(t, commands, "--broker"),
				"--broker-id", "spiffe://writ.dev/writd", "--svid-dir", filepath.Join(dataDir, "demo"))
			if code != 6 || !strings.Contains(out, "needs approval") {
				t.Errorf("credential before approval: exit %d, want 6 and a hint to request access:\n%s", code, out)
			}
		}
		out, code := runWrit(t, writ, env, args...)
		switch {
		case strings.Contains(c, "/outsider"):
			if code != 3 || !strings.Contains(out, "permission denied") {
				t.Errorf("writ %s: exit %d, want 3 and a permission denied message; output:\n%s", c, code, out)
			}
		case code != 0:
			t.Errorf("writ %s: exit %d\n%s", c, code, out)
		case args[0] == "request":
			m := regexp.MustCompile(`request\s+(r_[a-z0-9]+)`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("writ request printed no request ID:\n%s", out)
			}
			requestID = m[1]
		case args[0] == "breakglass":
			m := regexp.MustCompile(`(bg_[a-z0-9]+)`).FindStringSubmatch(out)
			if m == nil || !strings.Contains(out, "BREAK-GLASS") {
				t.Fatalf("writ breakglass printed no review ID:\n%s", out)
			}
			breakGlassID = m[1]
		case args[0] == "review":
			if !strings.Contains(out, "closed: justified") {
				t.Errorf("review: %q, want it closed as justified", out)
			}
		case args[0] == "approve":
			approvals++
			want := map[int]string{1: "is pending", 2: "is approved"}[approvals]
			if !strings.Contains(out, want) {
				t.Errorf("approval %d: %q, want %q", approvals, out, want)
			}
		case args[0] == "revoke":
			if !strings.Contains(out, "1 credentials") || !strings.Contains(out, "revoked") {
				t.Errorf("revoke receipt lacks the one JWT minted under the approval:\n%s", out)
			}
		case strings.Contains(c, "--output json"):
			var cred struct {
				Secret    string `json:"secret"`
				Kind      string `json:"kind"`
				ExpiresAt string `json:"expires_at"`
			}
			if err := json.Unmarshal([]byte(out), &cred); err != nil {
				t.Fatalf("credential --output json: %v\n%s", err, out)
			}
			if cred.Kind != "jwt" || cred.Secret == "" || cred.ExpiresAt == "" {
				t.Errorf("credential JSON = %+v, want a jwt with a secret and an expiry", cred)
			}
			token = cred.Secret
		case args[0] == "credential":
			if !strings.Contains(out, "expires") || !strings.Contains(out, "credential") {
				t.Errorf("credential table output lacks expiry or credential:\n%s", out)
			}
		}
	}
	if approvals != 2 {
		t.Errorf("ran %d approvals, want 2 (alice and bob)", approvals)
	}
	if token == "" || jwksURL == "" {
		t.Fatalf("no JSON credential or JWKS URL among the printed commands: %q", commands)
	}
	jwksOut, code := runWrit(t, writ, env, "jwks", "--url", jwksURL)
	if code != 0 {
		t.Fatalf("writ jwks: exit %d\n%s", code, jwksOut)
	}
	base := strings.TrimSuffix(jwksURL, "/.well-known/jwks.json")
	verifyWithJWKS(t, token, []byte(jwksOut), base)

	// SIGHUP is logged and ignored (reload is not supported yet): the
	// daemon keeps serving and is still ready (issue 12, item 7).
	if err := daemon.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz after SIGHUP: %v", err)
	}
	ready, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(ready) != "ready\n" {
		t.Errorf("GET /readyz after SIGHUP = %d %q, want 200 ready", resp.StatusCode, ready)
	}

	// The metrics the README lists are served.
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, want := range []string{
		`writ_grants_total{entitlement="demo",outcome="granted"} 2`,
		`writ_grants_total{entitlement="demo",outcome="not_eligible"} 1`,
		"writ_grant_duration_seconds_bucket",
		"writ_ledger_append_duration_seconds_count",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Graceful stop, then the offline verification the README promises.
	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Wait(); err != nil {
		t.Fatalf("writd exited with %v after SIGTERM, want a clean exit", err)
	}
	if !strings.Contains(logs.String(), "ignoring signal") || !strings.Contains(logs.String(), "signal=hangup") {
		t.Errorf("writd logs lack the ignored SIGHUP:\n%s", logs.String())
	}
	args := strings.Fields(commands[len(commands)-1])
	out, code := runWrit(t, writ, env, args...)
	if code != 0 || !regexp.MustCompile(`ledger ok: \d\d+ records`).MatchString(out) {
		t.Errorf("writ %s: exit %d, want ok with at least 3 records (2 grants, 1 denial):\n%s", strings.Join(args, " "), code, out)
	}
}

func runWrit(t *testing.T, writ string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(writ, args...)
	cmd.Env = append(append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET=", "WRIT_BROKER=", "WRIT_BROKER_ID=", "WRIT_SVID_DIR=",
		"WRIT_ADMIN=", "WRIT_BUNDLE=", "WRIT_TOKEN=", "WRIT_PROFILE=", "WRIT_DEV_URL="), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("run writ %v: %v", args, err)
		return "", -1
	}
}

// verifyWithJWKS checks token the way a relying party would.
func verifyWithJWKS(t *testing.T, token string, jwks []byte, issuer string) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS %s: %v", jwks, err)
	}
	keys := map[string]any{}
	for _, k := range set.Keys {
		keys[k.KeyID] = k.Key
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA", "ES256"}), jwt.WithAudience("demo-api"),
		jwt.WithIssuer(issuer), jwt.WithExpirationRequired())
	claims := jwt.RegisteredClaims{}
	if _, err := p.ParseWithClaims(token, &claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return nil, errors.New("unknown kid")
	}); err != nil {
		t.Fatalf("verify JWT against JWKS: %v", err)
	}
	if claims.Subject != "spiffe://writ.dev/demo" || claims.ID == "" {
		t.Errorf("claims sub=%q jti=%q, want the demo workload and a grant id", claims.Subject, claims.ID)
	}
}

// splitArgs splits a printed command line, honouring double quotes.
func splitArgs(line string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range line {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case r == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

// flagValue finds the value of flag in the first printed command that has it.
func flagValue(t *testing.T, commands []string, flag string) string {
	t.Helper()
	for _, c := range commands {
		args := splitArgs(c)
		for i, a := range args {
			if a == flag && i+1 < len(args) {
				return args[i+1]
			}
		}
	}
	t.Fatalf("no printed command has %s", flag)
	return ""
}
