package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-dev/writ/internal/testenv"
)

// agentFile is what the test template renders.
const agentTemplate = `TOKEN={{ .Secret }}
REF={{ .Reference }}
ISSUED={{ .IssuedAt.UnixMilli }}
EXPIRES={{ .ExpiresAt.UnixMilli }}
`

var agentFileRE = regexp.MustCompile(`^TOKEN=secret-\d+\nREF=(ref-\d+)\nISSUED=(\d+)\nEXPIRES=(\d+)\n$`)

type agentFile struct {
	ref             string
	issued, expires time.Time
	raw             string
}

// readAgentFile parses path, reporting false if it is absent.
func readAgentFile(t *testing.T, path string) (agentFile, bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return agentFile{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	m := agentFileRE.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("%s = %q, want the template's output", path, b)
	}
	ms := func(s string) time.Time { n, _ := strconv.ParseInt(s, 10, 64); return time.UnixMilli(n) }
	return agentFile{ref: m[1], issued: ms(m[2]), expires: ms(m[3]), raw: string(b)}, true
}

type agentLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *agentLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *agentLogs) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// writeAgentConfig writes an agent.yaml for b and returns its path.
func writeAgentConfig(t *testing.T, b *agentBroker, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	text := "broker: " + b.addr + "\nbroker_id: " + agentBrokerID.String() + "\nsvid: {dir: " + b.svidDir + "}\n" + extra
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAgent runs the agent on the config at path until the test ends.
func startAgent(t *testing.T, path string) (logs *agentLogs, stop func() error) {
	t.Helper()
	cfg, err := loadAgentConfig(path)
	if err != nil {
		t.Fatalf("loadAgentConfig() err = %v", err)
	}
	logs = &agentLogs{}
	opts := defaultAgentOptions()
	opts.backoffBase, opts.backoffMax = 100*time.Millisecond, time.Second
	opts.requestTimeout = 2 * time.Second
	if opts.log, err = newAgentLogger(logs, "debug", "text"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAgent(ctx, cfg, opts) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("agent did not stop within 10s of cancellation")
			}
			if t.Failed() {
				t.Logf("agent logs:\n%s", logs.String())
			}
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return logs, stop
}

func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// The agent writes the file from the template with mode 0600, renews it
// within the jitter bounds before it expires, runs the hook after each write,
// survives a failing hook, and exports the time to expiry.
func TestAgent_WritesRenewsAndRunsHook(t *testing.T) {
	t.Parallel()
	b := startAgentBroker(t)
	dir := t.TempDir()
	demo, other, marker := filepath.Join(dir, "demo.env"), filepath.Join(dir, "other.jwt"), filepath.Join(dir, "hook.log")
	metricsAddr := freeAddr(t)
	path := writeAgentConfig(t, b, "metrics_listen: "+metricsAddr+`
credentials:
  - entitlement: demo
    path: `+demo+`
    template: |
`+indent(agentTemplate, "      ")+`    command: ["sh", "-c", "echo $WRIT_REFERENCE >> `+marker+`"]
    renew_fraction: 0.5
  - entitlement: other
    path: `+other+`
    template: '{{ .Secret }}:{{ .Data.username }}'
    command: ["sh", "-c", "echo hook broke >&2; exit 3"]
`)
	logs, stop := startAgent(t, path)

	var first agentFile
	testenv.Eventually(t, 10*time.Second, "the first file", func() (ok bool) { first, ok = readAgentFile(t, demo); return ok })
	fi, err := os.Stat(demo)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("%s mode = %o, want 600", demo, mode)
	}
	if got := first.expires.Sub(first.issued); got != 3*time.Second {
		t.Errorf("credential lifetime = %v, want the policy's 3s", got)
	}

	var second agentFile
	testenv.Eventually(t, 10*time.Second, "the renewed file", func() bool {
		var ok bool
		second, ok = readAgentFile(t, demo)
		return ok && second.ref != first.ref
	})
	if seen := time.Now(); !seen.Before(first.expires.Add(100 * time.Millisecond)) {
		t.Errorf("renewed file seen at %v, after the first credential expired at %v", seen, first.expires)
	}
	// renew_fraction 0.5 ± 10% jitter of 3s: renewed 1.2s to 1.8s after issue
	// (plus the time the request takes).
	if gap := second.issued.Sub(first.issued); gap < 1200*time.Millisecond || gap > 2300*time.Millisecond {
		t.Errorf("renewed %v after the first issue, want 1.2s–1.8s (renew_fraction 0.5 ± 0.1)", gap)
	}

	testenv.Eventually(t, 5*time.Second, "the hook to run twice", func() bool {
		b, _ := os.ReadFile(marker)
		return strings.Count(string(b), "\n") >= 2
	})
	hookRuns, _ := os.ReadFile(marker)
	if lines := strings.Split(strings.TrimSpace(string(hookRuns)), "\n"); lines[0] != first.ref || lines[1] != second.ref {
		t.Errorf("hook saw references %q, want %s then %s", lines, first.ref, second.ref)
	}

	// The failing hook is logged, and its credential is still written.
	if b, err := os.ReadFile(other); err != nil || !regexp.MustCompile(`^secret-\d+:user-\d+$`).Match(b) {
		t.Errorf("%s = %q, %v; want the secret and the username field", other, b, err)
	}
	if !strings.Contains(logs.String(), "credential hook failed") || !strings.Contains(logs.String(), "hook broke") {
		t.Errorf("logs lack the failed hook and its output:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "TOKEN=") || regexp.MustCompile(`(secret|user)-\d`).MatchString(logs.String()) {
		t.Errorf("logs contain a secret:\n%s", logs.String())
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`writ_agent_credential_expiry_seconds\{entitlement="demo"\} (\S+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics lacks the demo expiry:\n%s", body)
	}
	if v, _ := strconv.ParseFloat(string(m[1]), 64); v <= 0 || v > 3 {
		t.Errorf("writ_agent_credential_expiry_seconds{demo} = %v, want in (0, 3]", v)
	}

	if err := stop(); err != nil {
		t.Errorf("agent stopped with %v, want nil on cancellation (SIGTERM)", err)
	}
}

// While the broker is down the agent keeps the last file (also past its
// expiry, logged loudly) and renews it once the broker is back.
func TestAgent_SurvivesBrokerRestart(t *testing.T) {
	t.Parallel()
	b := startAgentBroker(t)
	demo := filepath.Join(t.TempDir(), "demo.env")
	path := writeAgentConfig(t, b, `credentials:
  - entitlement: demo
    path: `+demo+`
    template: |
`+indent(agentTemplate, "      "))
	logs, stop := startAgent(t, path)

	var before agentFile
	testenv.Eventually(t, 10*time.Second, "the first file", func() (ok bool) { before, ok = readAgentFile(t, demo); return ok })
	b.Stop()
	downUntil := time.Now().Add(4 * time.Second) // longer than a credential lives
	for time.Now().Before(downUntil) {
		got, ok := readAgentFile(t, demo)
		if !ok {
			t.Fatalf("%s was removed while the broker was down", demo)
		}
		if got.issued.After(before.issued.Add(3 * time.Second)) {
			t.Fatalf("%s changed to a credential issued at %v while the broker was down", demo, got.issued)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "credential expired and could not be renewed") {
		t.Errorf("logs lack the expiry error:\n%s", logs.String())
	}
	down, _ := readAgentFile(t, demo)

	b.Start()
	testenv.Eventually(t, 15*time.Second, "a renewal after the broker restarted", func() bool {
		got, ok := readAgentFile(t, demo)
		return ok && got.ref != down.ref
	})
	if err := stop(); err != nil {
		t.Errorf("agent stopped with %v, want nil", err)
	}
}

// A credential the policy refuses makes the agent exit at once, with the
// CLI's exit code for a denial and a message naming the entitlement.
func TestAgent_PermissionDeniedExitsQuickly(t *testing.T) {
	t.Parallel()
	b := startAgentBroker(t)
	dir := t.TempDir()
	path := writeAgentConfig(t, b, `credentials:
  - entitlement: demo
    path: `+filepath.Join(dir, "demo.jwt")+`
  - entitlement: forbidden
    path: `+filepath.Join(dir, "forbidden.jwt")+`
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	var stderr bytes.Buffer
	err := run(ctx, []string{"agent", "--config", path}, io.Discard, &stderr)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("agent took %v to give up, want it at once", took)
	}
	if err == nil {
		t.Fatal("agent returned nil, want an error")
	}
	if got := exitCode(err); got != exitDenied {
		t.Errorf("exit code = %d (%v), want %d", got, err, exitDenied)
	}
	if !strings.Contains(err.Error(), `"forbidden"`) || !strings.Contains(err.Error(), "retrying will not help") {
		t.Errorf("err = %v, want it to name the entitlement and say it is permanent", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "forbidden.jwt")); !os.IsNotExist(err) {
		t.Errorf("forbidden.jwt exists (err %v), want no file", err)
	}
}

// A broker that never answers: the agent gives up after --initial-timeout
// with the exit code for an unavailable broker.
func TestAgent_InitialTimeout(t *testing.T) {
	t.Parallel()
	b := startAgentBroker(t)
	b.Stop()
	path := writeAgentConfig(t, b, `credentials:
  - entitlement: demo
    path: `+filepath.Join(t.TempDir(), "demo.jwt")+`
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := run(ctx, []string{"agent", "--config", path, "--initial-timeout", "1500ms"}, io.Discard, io.Discard)
	if took := time.Since(start); took < 1500*time.Millisecond || took > 6*time.Second {
		t.Errorf("agent gave up after %v, want about 1.5s", took)
	}
	if got := exitCode(err); got != exitUnavailable {
		t.Errorf("exit code = %d (%v), want %d", got, err, exitUnavailable)
	}
	if err == nil || !strings.Contains(err.Error(), "--initial-timeout") || !strings.Contains(err.Error(), `"demo"`) {
		t.Errorf("err = %v, want it to name the timeout and the entitlement", err)
	}
}

func indent(s, prefix string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			out.WriteString(prefix + l)
		}
	}
	return out.String()
}
