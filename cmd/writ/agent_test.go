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
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/writ-dev/writ/internal/clock"
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

// startAgent runs the agent on the config at path, on clk, until the test
// ends.
func startAgent(t *testing.T, path string, clk clock.Clock) (logs *agentLogs, stop func() error) {
	t.Helper()
	cfg, err := loadAgentConfig(path)
	if err != nil {
		t.Fatalf("loadAgentConfig() err = %v", err)
	}
	logs = &agentLogs{}
	opts := testAgentOptions(t, logs, clk)
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

// testAgentOptions are the agent's options for a test: short backoff, the
// test's clock, debug logs into logs.
func testAgentOptions(t *testing.T, logs io.Writer, clk clock.Clock) agentOptions {
	t.Helper()
	opts := defaultAgentOptions()
	opts.backoffBase, opts.backoffMax = 100*time.Millisecond, time.Second
	opts.requestTimeout = 2 * time.Second
	opts.clock = clk
	var err error
	if opts.log, err = newAgentLogger(logs, "debug", "text"); err != nil {
		t.Fatal(err)
	}
	return opts
}

// newAgentClock returns a fake clock at the current time (to the
// millisecond, the precision of the test template), so that certificates
// minted on the real clock are valid on it.
func newAgentClock() *clock.Fake { return clock.NewFake(time.Now().Truncate(time.Millisecond)) }

// agentReady waits until the agent has written every credential and stopped
// its initial-timeout timer, so that the timers left are its workers'.
func agentReady(t *testing.T, logs *agentLogs) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "the agent to be ready", func() bool {
		return strings.Contains(logs.String(), "agent ready: every credential is written")
	})
}

// agentAsleep waits until the agent has set n timers, that is until each of
// its n workers has finished its refresh (and hook) and sleeps until its next
// renewal or retry, and returns their deadlines, earliest first.
func agentAsleep(t *testing.T, clk *clock.Fake, n int) []time.Time {
	t.Helper()
	var p []time.Time
	testenv.Eventually(t, 15*time.Second, strconv.Itoa(n)+" agent workers asleep on their timers", func() bool {
		p = clk.Pending()
		return len(p) == n
	})
	return p
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
	clk := newAgentClock()
	b := startAgentBroker(t, clk.Now)
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
	logs, stop := startAgent(t, path, clk)

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

	// Move the clock to each renewal time in turn (the other credential's
	// may come first) until the demo file is renewed. The broker issues on
	// the same clock, so the renewed credential's issue time is the time the
	// agent's timer fired.
	agentReady(t, logs)
	var second agentFile
	for {
		pending := agentAsleep(t, clk, 2) // demo and other
		var ok bool
		if second, ok = readAgentFile(t, demo); ok && second.ref != first.ref {
			break
		}
		if !pending[0].Before(first.expires) {
			t.Fatalf("next agent timer at %v, not before the first credential expires at %v; it was not renewed", pending[0], first.expires)
		}
		clk.AdvanceTo(pending[0])
	}
	if now := clk.Now(); !now.Before(first.expires) {
		t.Errorf("renewed at %v, after the first credential expired at %v", now, first.expires)
	}
	// renew_fraction 0.5 ± 10% jitter of 3s: renewed 1.2s to 1.8s after issue.
	if gap := second.issued.Sub(first.issued); gap < 1200*time.Millisecond || gap > 1800*time.Millisecond {
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
	clk := newAgentClock()
	b := startAgentBroker(t, clk.Now)
	demo := filepath.Join(t.TempDir(), "demo.env")
	path := writeAgentConfig(t, b, `credentials:
  - entitlement: demo
    path: `+demo+`
    template: |
`+indent(agentTemplate, "      "))
	logs, stop := startAgent(t, path, clk)

	var before agentFile
	testenv.Eventually(t, 10*time.Second, "the first file", func() (ok bool) { before, ok = readAgentFile(t, demo); return ok })
	agentReady(t, logs)
	agentAsleep(t, clk, 1)
	b.Stop()
	// 4s on the agent's clock, longer than a credential lives, one renewal
	// or retry timer at a time.
	downUntil := before.issued.Add(4 * time.Second)
	for clk.Now().Before(downUntil) {
		pending := agentAsleep(t, clk, 1)
		got, ok := readAgentFile(t, demo)
		if !ok {
			t.Fatalf("%s was removed while the broker was down", demo)
		}
		if got.ref != before.ref {
			t.Fatalf("%s changed to a credential issued at %v while the broker was down", demo, got.issued)
		}
		clk.AdvanceTo(pending[0])
	}
	agentAsleep(t, clk, 1)
	if !strings.Contains(logs.String(), "credential expired and could not be renewed") {
		t.Errorf("logs lack the expiry error:\n%s", logs.String())
	}
	down, _ := readAgentFile(t, demo)

	b.Start()
	// Retry timers until the agent reaches the broker again (the gRPC
	// channel reconnects on its own, real, schedule).
	testenv.Eventually(t, 15*time.Second, "a renewal after the broker restarted", func() bool {
		if got, ok := readAgentFile(t, demo); ok && got.ref != down.ref {
			return true
		}
		if p := clk.Pending(); len(p) == 1 {
			clk.AdvanceTo(p[0])
		}
		return false
	})
	if err := stop(); err != nil {
		t.Errorf("agent stopped with %v, want nil", err)
	}
}

// A credential the policy refuses makes the agent exit at once, with the
// CLI's exit code for a denial and a message naming the entitlement.
func TestAgent_PermissionDeniedExitsQuickly(t *testing.T) {
	t.Parallel()
	b := startAgentBroker(t, time.Now)
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

// A broker that never answers: the agent gives up once --initial-timeout
// has passed on its clock, not before, with the exit code for an
// unavailable broker.
func TestAgent_InitialTimeout(t *testing.T) {
	t.Parallel()
	clk := newAgentClock()
	b := startAgentBroker(t, clk.Now)
	b.Stop()
	path := writeAgentConfig(t, b, `credentials:
  - entitlement: demo
    path: `+filepath.Join(t.TempDir(), "demo.jwt")+`
`)
	// The flag sets the option runAgent is given.
	cmd := agentCmd()
	if err := cmd.Flags().Parse([]string{"--initial-timeout", "1500ms"}); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("initial-timeout").Value.String(); got != "1.5s" {
		t.Fatalf("--initial-timeout 1500ms parsed as %s", got)
	}
	cfg, err := loadAgentConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := testAgentOptions(t, io.Discard, clk)
	opts.initialTimeout = 1500 * time.Millisecond
	start := clk.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runAgent(ctx, cfg, opts) }()

	// Move the clock through the worker's retries; the agent is still
	// trying until 1.5s have passed, and gives up when they have.
	deadline := start.Add(1500 * time.Millisecond)
	for clk.Now().Before(deadline) {
		pending := agentAsleep(t, clk, 2) // the worker's retry and the initial timeout
		select {
		case err := <-done:
			t.Fatalf("agent gave up at +%v, before --initial-timeout 1.5s: %v", clk.Now().Sub(start), err)
		default:
		}
		if !slices.ContainsFunc(pending, deadline.Equal) {
			t.Fatalf("agent timers at %v, none at --initial-timeout (%v)", pending, deadline)
		}
		clk.AdvanceTo(pending[0])
	}
	var err2 error
	select {
	case err2 = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not give up within 10s after --initial-timeout passed on its clock")
	}
	if got := exitCode(err2); got != exitUnavailable {
		t.Errorf("exit code = %d (%v), want %d", got, err2, exitUnavailable)
	}
	if err2 == nil || !strings.Contains(err2.Error(), "--initial-timeout 1.5s") || !strings.Contains(err2.Error(), `"demo"`) {
		t.Errorf("err = %v, want it to name the timeout and the entitlement", err2)
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
