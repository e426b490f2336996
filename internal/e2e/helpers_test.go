package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/broker/client"
	"github.com/writ-dev/writ/internal/spiretest"
	"github.com/writ-dev/writ/internal/testenv"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// helperEnv switches the test binary into a workload process (see
// workloadMain) instead of running tests.
const helperEnv = "WRIT_E2E_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "workload" {
		os.Exit(workloadMain())
	}
	code := m.Run()
	bins.cleanup()
	os.Exit(code)
}

// The uids workloads run under; they need no /etc/passwd entry.
const (
	uidOrders = 4242  // registered as spiffe://example.org/ns/orders/api
	uidNobody = 65534 // never registered
)

const (
	entitlement = "orders"
	testPolicy  = `version: 1
trust_domain: example.org
entitlements:
  - name: orders
    owner: team-orders
    purpose: end-to-end tests
    max_ttl: 15m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {jwt: {audience: [orders-api]}}
    approval: {mode: auto}
`
)

// binaries are writd, writ and a copy of this test binary, built once per
// run into a directory every uid may read and execute.
type binaryDir struct {
	once                      sync.Once
	err                       error
	dir                       string
	writd, writ, workloadExec string
}

var bins binaryDir

func (b *binaryDir) cleanup() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// build returns the binaries, building them on first use.
func (b *binaryDir) build(t *testing.T) *binaryDir {
	t.Helper()
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "writ-e2e-bin")
		if b.err != nil {
			return
		}
		if b.err = os.Chmod(b.dir, 0o755); b.err != nil {
			return
		}
		b.writd, b.writ, b.workloadExec = filepath.Join(b.dir, "writd"), filepath.Join(b.dir, "writ"), filepath.Join(b.dir, "workload")
		for out, pkg := range map[string]string{b.writd: "github.com/writ-dev/writ/cmd/writd", b.writ: "github.com/writ-dev/writ/cmd/writ"} {
			if out, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
				return
			}
		}
		// The workload helper is this test binary: its build directory is
		// private to root, so it is copied.
		self, err := os.Executable()
		if err != nil {
			b.err = err
			return
		}
		b.err = copyFile(self, b.workloadExec, 0o755)
	})
	if b.err != nil {
		t.Fatalf("build binaries: %v", b.err)
	}
	return b
}

func copyFile(from, to string, mode os.FileMode) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		_ = dst.Close()
		return err
	}
	return dst.Close()
}

// requireRoot skips t (or fails it under WRIT_INTEGRATION=require) unless
// the tests run as root, which starting workloads under other uids needs.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root", "the end-to-end tests run workloads under other uids (setuid): run them as root, as CI does")
	}
}

// env is SPIRE, a broker registered by the test process's uid and run from
// the writd binary, and what a test needs to reach it.
type env struct {
	spire    *spiretest.SPIRE
	bins     *binaryDir
	brokerID spiffeid.ID
	broker   *writd
	// bundles holds the trust bundle, from the Workload API as the test
	// process (which has the broker's identity) sees it.
	bundles *workloadapi.X509Source
	dir     string
}

// newEnv starts SPIRE with the given X.509-SVID TTL (zero: an hour) and a
// broker with its SVID from the agent and a JWT-SVID listener.
func newEnv(t *testing.T, ttl time.Duration) *env {
	t.Helper()
	requireRoot(t)
	s := spiretest.Start(t, spiretest.Options{X509SVIDTTL: ttl})
	b := bins.build(t)
	e := &env{spire: s, bins: b, brokerID: s.ID(t, "/writd"), dir: t.TempDir()}
	s.CreateEntry(t, e.brokerID.String(), fmt.Sprintf("unix:uid:%d", os.Getuid()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.WaitForSVID(t, ctx, e.brokerID.String())
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(s.WorkloadSocket())))
	if err != nil {
		t.Fatalf("X509Source: %v", err)
	}
	t.Cleanup(func() { _ = src.Close() })
	e.bundles = src

	writeFile(t, filepath.Join(e.dir, "policy.yaml"), testPolicy)
	e.broker = e.startWritd(t, "broker", fmt.Sprintf("svid: {workload_api_socket: %q}\n", s.WorkloadSocket()))
	return e
}

// startWritd writes a configuration (the common part, then svidYAML) and
// runs `writd serve` with it until the test ends.
func (e *env) startWritd(t *testing.T, name, svidYAML string) *writd {
	t.Helper()
	conf := fmt.Sprintf(`listen: 127.0.0.1:0
http: {listen: ""}
policy: %q
data_dir: %q
jwt: {issuer: "https://writ.example.org"}
jwt_svid: {listen: "127.0.0.1:0", audience: %q}
log: {level: info, format: json}
shutdown_timeout: 10s
`, filepath.Join(e.dir, "policy.yaml"), filepath.Join(e.dir, name+"-data"), e.brokerID.String()) + svidYAML
	path := filepath.Join(e.dir, name+".yaml")
	writeFile(t, path, conf)
	return startWritd(t, e.bins.writd, path)
}

// registerWorkload registers id for processes under uid and returns the
// entry's ID.
func (e *env) registerWorkload(t *testing.T, path string, uid int) (spiffeid.ID, string) {
	t.Helper()
	id := e.spire.ID(t, path)
	return id, e.spire.CreateEntry(t, id.String(), fmt.Sprintf("unix:uid:%d", uid))
}

// writd is a running `writd serve`.
type writd struct {
	grpcAddr, jwtSVIDAddr string
	logs                  *syncBuffer
}

func startWritd(t *testing.T, bin, config string) *writd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", config)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &writd{logs: &syncBuffer{}}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start writd: %v", err)
	}
	exited := make(chan struct{})
	serving := make(chan map[string]json.RawMessage, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = w.logs.Write(append(line, '\n'))
			var rec map[string]json.RawMessage
			if json.Unmarshal(line, &rec) == nil && string(rec["msg"]) == `"writd serving"` {
				serving <- rec
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("writd %s log:\n%s", config, w.logs.String())
		}
	})
	select {
	case rec := <-serving:
		w.grpcAddr, w.jwtSVIDAddr = testenv.LoggedAddr(t, rec["grpc"]), testenv.LoggedAddr(t, rec["jwt_svid"])
	case <-exited:
		t.Fatalf("writd exited before serving:\n%s", w.logs.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("writd did not start serving in 90s:\n%s", w.logs.String())
	}
	return w
}

// result is what the workload helper prints for each command.
type result struct {
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	Code     string    `json:"code,omitempty"` // gRPC code of a broker error
	GrantID  string    `json:"grant_id,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
	ID       string    `json:"id,omitempty"`     // SPIFFE ID of an SVID
	Serial   string    `json:"serial,omitempty"` // of an X.509-SVID
	NotAfter time.Time `json:"not_after,omitzero"`
	Token    string    `json:"token,omitempty"` // a JWT-SVID
}

// workloadMain is the workload process: it reads commands from standard
// input, one per line, and prints one JSON result per command. It knows the
// Workload API only from SPIFFE_ENDPOINT_SOCKET.
//
//	new           client.New with the broker from WRIT_E2E_BROKER(_ID)
//	issue         (*client.Client).Issue: always a broker round trip
//	credential    (*client.Client).Credential: cached until renewal
//	svid          the X.509-SVID the Workload API serves now
//	jwt AUDIENCE  a JWT-SVID for AUDIENCE from the Workload API
func workloadMain() int {
	brokerID, err := spiffeid.FromString(os.Getenv("WRIT_E2E_BROKER_ID"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	timeout := 15 * time.Second
	if d, err := time.ParseDuration(os.Getenv("WRIT_E2E_TIMEOUT")); err == nil {
		timeout = d
	}
	var c *client.Client
	defer func() {
		if c != nil {
			_ = c.Close()
		}
	}()
	enc := json.NewEncoder(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		args := strings.Fields(sc.Text())
		if len(args) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		var r result
		switch args[0] {
		case "new":
			c, err = client.New(ctx, client.Config{BrokerAddr: os.Getenv("WRIT_E2E_BROKER"), BrokerID: brokerID, Timeout: 10 * time.Second})
		case "issue", "credential":
			if c == nil {
				err = errors.New("no client: send new first")
				break
			}
			var cred client.Credential
			if args[0] == "issue" {
				cred, err = c.Issue(ctx, entitlement)
			} else {
				cred, err = c.Credential(ctx, entitlement)
			}
			r.GrantID, r.Expires = cred.GrantID, cred.ExpiresAt
		case "svid":
			var svid *x509svid.SVID
			svid, err = workloadapi.FetchX509SVID(ctx)
			if err == nil {
				r.ID, r.Serial, r.NotAfter = svid.ID.String(), svid.Certificates[0].SerialNumber.String(), svid.Certificates[0].NotAfter
			}
		case "jwt":
			var svid *jwtsvid.SVID
			svid, err = workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: args[1]})
			if err == nil {
				r.ID, r.Token = svid.ID.String(), svid.Marshal()
			}
		default:
			err = fmt.Errorf("unknown command %q", args[0])
		}
		cancel()
		r.OK = err == nil
		if err != nil {
			r.Error = err.Error()
			if s, ok := status.FromError(err); ok {
				r.Code = s.Code().String()
			}
		}
		if err := enc.Encode(r); err != nil {
			return 1
		}
	}
	return 0
}

// workload is a running workload helper process under some uid.
type workload struct {
	in     io.WriteCloser
	lines  chan string
	stderr *syncBuffer
}

// startWorkload runs the workload helper under uid until the test ends,
// with SPIFFE_ENDPOINT_SOCKET pointing at the agent. Each command gets
// timeout (zero: 15s).
func (e *env) startWorkload(t *testing.T, uid int, brokerAddr string, timeout time.Duration) *workload {
	t.Helper()
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	cmd := exec.Command(e.bins.workloadExec, "-test.run=^$")
	cmd.Dir = e.bins.dir
	cmd.Env = append(workloadEnv(e), helperEnv+"=workload", "WRIT_E2E_BROKER="+brokerAddr,
		"WRIT_E2E_BROKER_ID="+e.brokerID.String(), "WRIT_E2E_TIMEOUT="+timeout.String())
	cmd.SysProcAttr = asUID(uid)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &workload{in: in, lines: make(chan string), stderr: &syncBuffer{}}
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start workload as uid %d: %v", uid, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			select {
			case w.lines <- sc.Text():
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		_ = in.Close()
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
		if t.Failed() {
			t.Logf("workload (uid %d) stderr:\n%s", uid, w.stderr.String())
		}
	})
	return w
}

// do sends one command and returns its result.
func (w *workload) do(t *testing.T, command string) result {
	t.Helper()
	if _, err := io.WriteString(w.in, command+"\n"); err != nil {
		t.Fatalf("workload %q: %v\nstderr:\n%s", command, err, w.stderr.String())
	}
	select {
	case line, ok := <-w.lines:
		if !ok {
			t.Fatalf("workload exited during %q\nstderr:\n%s", command, w.stderr.String())
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("workload %q printed %q: %v", command, line, err)
		}
		return r
	case <-time.After(time.Minute):
		t.Fatalf("workload %q gave no answer in a minute\nstderr:\n%s", command, w.stderr.String())
	}
	panic("unreachable")
}

// mustDo is do, failing t unless the command succeeds.
func (w *workload) mustDo(t *testing.T, command string) result {
	t.Helper()
	r := w.do(t, command)
	if !r.OK {
		t.Fatalf("workload %q failed: %s (%s)", command, r.Error, r.Code)
	}
	return r
}

// waitForSVID polls the Workload API as the workload until it serves id:
// a new entry reaches the agent within a few seconds. SPIRE is a real
// external process with its own schedule (no clock to inject); each poll
// starts a workload process, hence the 500ms between polls.
func (w *workload) waitForSVID(t *testing.T, id spiffeid.ID) result {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := w.do(t, "svid")
		if r.OK && r.ID == id.String() {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Workload API did not serve %s to the workload within a minute: %+v", id, r)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func workloadEnv(e *env) []string {
	return []string{"PATH=/usr/bin:/bin", "HOME=/", "SPIFFE_ENDPOINT_SOCKET=" + e.spire.WorkloadSocket()}
}

func asUID(uid int) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
}

// runWrit runs the writ CLI under uid with SPIFFE_ENDPOINT_SOCKET set and
// returns its combined output and exit code.
func (e *env) runWrit(t *testing.T, uid int, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bins.writ, args...)
	cmd.Dir = e.bins.dir
	cmd.Env = workloadEnv(e)
	cmd.SysProcAttr = asUID(uid)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("run writ %s: %v\n%s", strings.Join(args, " "), err, out)
		return "", -1
	}
}

// callJWTSVID calls IssueCredential on the JWT-SVID listener at addr as a
// TLS-terminating proxy would: verifying the broker's SVID with the trust
// bundle, presenting no certificate, with token as the bearer.
func (e *env) callJWTSVID(t *testing.T, addr, token string) (*brokerv1.Credential, error) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(
		credentials.NewTLS(tlsconfig.TLSClientConfig(e.bundles, tlsconfig.AuthorizeID(e.brokerID)))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := brokerv1.NewBrokerServiceClient(cc).IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: entitlement})
	return resp.GetCredential(), err
}

// brokerSerial returns the serial number of the X.509-SVID the broker
// presents now on its JWT-SVID listener (server-authenticated TLS, verified
// with the trust bundle).
func (e *env) brokerSerial(t *testing.T) *big.Int {
	t.Helper()
	cfg := tlsconfig.TLSClientConfig(e.bundles, tlsconfig.AuthorizeID(e.brokerID))
	cfg.NextProtos = []string{"h2"}
	d := tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", e.broker.jwtSVIDAddr)
	if err != nil {
		t.Fatalf("TLS handshake with the broker: %v", err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
