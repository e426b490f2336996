package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/writ-dev/writ/internal/oidc"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/testenv"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

var (
	td       = spiffeid.RequireTrustDomainFromString("crash.test")
	brokerID = spiffeid.RequireFromPath(td, "/writd")
	loadID   = spiffeid.RequireFromPath(td, "/load")
)

// cycles is the number of kill -9 cycles: WRIT_CRASH_CYCLES, default 5.
func cycles(t *testing.T) int {
	t.Helper()
	if s := os.Getenv("WRIT_CRASH_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("WRIT_CRASH_CYCLES=%q is not a positive number", s)
		}
		return n
	}
	return 5
}

// binaries are writd and writ, built once per test binary.
var bins struct {
	once        sync.Once
	err         error
	writd, writ string
}

func build(t *testing.T) (writd, writ string) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "writ-crash-bin")
		if err != nil {
			bins.err = err
			return
		}
		bins.writd, bins.writ = filepath.Join(dir, "writd"), filepath.Join(dir, "writ")
		for out, pkg := range map[string]string{bins.writd: "github.com/writ-dev/writ/cmd/writd", bins.writ: "github.com/writ-dev/writ/cmd/writ"} {
			if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.writd, bins.writ
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.writd != "" {
		_ = os.RemoveAll(filepath.Dir(bins.writd))
	}
	os.Exit(code)
}

// harness is a data directory, the identities, an OIDC issuer for people
// and the writd configuration that uses them.
type harness struct {
	dir, dataDir, config string
	writd, writ          string
	ca                   *devca.CA
	load                 *x509svid.SVID
	people               *oidc.DevIssuer
}

// vaultConf is the vault block of the configuration, when Vault is used.
type vaultConf struct {
	addr, tokenFile string
}

func newHarness(t *testing.T, policy string, v *vaultConf) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir()}
	h.writd, h.writ = build(t)
	h.dataDir = filepath.Join(h.dir, "data")
	var err error
	if h.ca, err = devca.New(td, devca.WithNow(time.Now)); err != nil {
		t.Fatal(err)
	}
	bsvid, err := h.ca.Issue(brokerID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := devca.WriteSVID(filepath.Join(h.dir, "writd"), bsvid, h.ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if h.load, err = h.ca.Issue(loadID, devca.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	// People sign in with tokens from an OIDC issuer in this process.
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if h.people, err = oidc.NewDevIssuer(srv.URL, time.Now); err != nil {
		t.Fatal(err)
	}
	mux.Handle("/jwks", h.people.JWKSHandler())

	write(t, filepath.Join(h.dir, "policy.yaml"), policy)
	conf := fmt.Sprintf(`listen: 127.0.0.1:0
http: {listen: ""}
svid: {cert_file: %q, key_file: %q, bundle_file: %q}
policy: %q
data_dir: %q
jwt: {issuer: "https://writ.crash.test"}
admin: {listen: 127.0.0.1:0}
oidc: {issuer: %q, audience: %q, jwks_url: %q}
log: {level: info, format: json}
shutdown_timeout: 5s
# The load generator is one principal that leaves requests pending across
# crashes on purpose; the crash harness tests durability, not the limits
# (broker/limits_test.go and the T39 test do).
limits: {pending_per_requester: 0, grants: {per_second: 0}, requests: {per_second: 0}}
`, files.Cert, files.Key, files.Bundle, filepath.Join(h.dir, "policy.yaml"), h.dataDir, srv.URL, oidc.DevAudience, srv.URL+"/jwks")
	if v != nil {
		conf += fmt.Sprintf("vault: {address: %q, token_file: %q, timeout: 10s}\n", v.addr, v.tokenFile)
	}
	h.config = filepath.Join(h.dir, "writ.yaml")
	write(t, h.config, conf)
	return h
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// daemon is one run of writd serve.
type daemon struct {
	cmd         *exec.Cmd
	grpc, admin string
	logs        *syncBuffer
	exited      chan struct{}
}

// start runs writd serve and waits until it serves (the reconciler has run
// by then).
func (h *harness) start(t *testing.T) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(h.writd, "serve", "--config", h.config), logs: &syncBuffer{}, exited: make(chan struct{})}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan map[string]json.RawMessage, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = d.logs.Write(append(line, '\n'))
			var rec map[string]json.RawMessage
			if json.Unmarshal(line, &rec) == nil && string(rec["msg"]) == `"writd serving"` {
				serving <- rec
			}
		}
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("writd log:\n%s", d.logs.String())
		}
	})
	select {
	case rec := <-serving:
		d.grpc, d.admin = testenv.LoggedAddr(t, rec["grpc"]), testenv.LoggedAddr(t, rec["admin"])
	case <-d.exited:
		t.Fatalf("writd exited before serving:\n%s", d.logs.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("writd did not serve within 90s:\n%s", d.logs.String())
	}
	return d
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// stop asks writd to shut down gracefully.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("writd did not stop within 30s of SIGTERM")
		d.kill()
	}
}

// memSource serves one SVID and the CA's bundle.
type memSource struct {
	*x509svid.SVID
	*x509bundle.Bundle
}

func (memSource) Close() error { return nil }

// workload returns a broker client with the load workload's SVID.
func (h *harness) workload(t *testing.T, d *daemon) (brokerv1.BrokerServiceClient, func()) {
	t.Helper()
	cc, err := grpc.NewClient(d.grpc, grpc.WithTransportCredentials(spiffe.ClientCredentials(memSource{h.load, h.ca.Bundle()}, tlsconfig.AuthorizeID(brokerID))))
	if err != nil {
		t.Fatal(err)
	}
	return brokerv1.NewBrokerServiceClient(cc), func() { _ = cc.Close() }
}

// person returns an admin client signed in as subject with groups.
func (h *harness) person(t *testing.T, d *daemon, subject string, groups ...string) (adminv1.AdminServiceClient, func()) {
	t.Helper()
	tok, err := h.people.Mint(subject, groups, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(d.admin,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(h.ca.Bundle(), tlsconfig.AuthorizeID(brokerID)))),
		grpc.WithPerRPCCredentials(bearer(tok)))
	if err != nil {
		t.Fatal(err)
	}
	return adminv1.NewAdminServiceClient(cc), func() { _ = cc.Close() }
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// auditVerify runs `writ audit verify` on the data directory of a stopped
// broker and returns its output and whether it passed.
func (h *harness) auditVerify(t *testing.T) (string, bool) {
	t.Helper()
	out, err := exec.Command(h.writ, "audit", "verify", "--data-dir", h.dataDir).CombinedOutput()
	return string(out), err == nil
}

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
