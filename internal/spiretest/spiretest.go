// Package spiretest runs a real SPIRE server and agent for tests: a
// server with an in-memory key manager and a SQLite datastore, and one agent
// attested with a join token that serves the Workload API on a unix socket
// and attests workloads by unix uid.
//
// The binaries come from WRIT_SPIRE_DIR, or else from the directory
// `bash .ci/tools.sh spire` builds and caches. Without them a test is skipped,
// or failed under WRIT_INTEGRATION=require (see internal/testenv).
//
// It is importable only from _test.go files and other test packages.
package spiretest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/writ-dev/writ/internal/testenv"
)

// EnvDir names the environment variable holding the directory with the
// spire-server and spire-agent binaries.
const EnvDir = "WRIT_SPIRE_DIR"

// spireVersion is the SPIRE release .ci/tools.sh builds; it names the cache
// directory looked up when EnvDir is unset.
const spireVersion = "v1.13.3"

// AgentID is the path of the SPIFFE ID the agent's node entry gives it;
// workload entries made by CreateEntry have it as their parent.
const AgentID = "/agent"

// startTimeout bounds how long the server and agent may take to become
// healthy.
const startTimeout = 60 * time.Second

// Options configures Start.
type Options struct {
	// TrustDomain is the SPIRE trust domain. Default "example.org".
	TrustDomain string
	// X509SVIDTTL is the lifetime of the X.509-SVIDs the server issues
	// (default_x509_svid_ttl, also passed to every entry CreateEntry makes).
	// Default one hour. The agent rotates an SVID after half of it.
	X509SVIDTTL time.Duration
}

// SPIRE is a running SPIRE server and agent. Its methods may be called from
// the test's goroutines concurrently.
type SPIRE struct {
	td        spiffeid.TrustDomain
	ttl       time.Duration
	bin       string // directory of the binaries
	serverAPI string // path of the server API socket
	agentAPI  string // path of the Workload API socket
}

// Start runs a SPIRE server and an agent until t ends. It returns once both
// pass their health checks. Their logs are written to files in a temporary
// directory and dumped with t.Log if the test fails.
func Start(t testing.TB, opts Options) *SPIRE {
	t.Helper()
	bin := Dir(t)
	if opts.TrustDomain == "" {
		opts.TrustDomain = "example.org"
	}
	if opts.X509SVIDTTL == 0 {
		opts.X509SVIDTTL = time.Hour
	}
	td, err := spiffeid.TrustDomainFromString(opts.TrustDomain)
	if err != nil {
		t.Fatalf("spiretest: trust domain: %v", err)
	}

	// Unix socket paths must stay under about 104 bytes, which a t.TempDir()
	// named after a long test can exceed: the sockets get a short directory,
	// laid out as SPIRE documents it. Workloads under other uids must reach
	// the agent's socket in public/; the server API (which can register
	// entries) stays private to the test's uid.
	sockDir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatalf("spiretest: socket directory: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{sockDir, 0o755}, {filepath.Join(sockDir, "private"), 0o700}, {filepath.Join(sockDir, "public"), 0o755}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			t.Fatalf("spiretest: %v", err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil { // MkdirTemp and the umask narrow modes
			t.Fatalf("spiretest: %v", err)
		}
	}
	dataDir := t.TempDir()
	for _, d := range []string{"server", "agent"} {
		if err := os.Mkdir(filepath.Join(dataDir, d), 0o700); err != nil {
			t.Fatalf("spiretest: %v", err)
		}
	}

	s := &SPIRE{
		td:        td,
		ttl:       opts.X509SVIDTTL,
		bin:       bin,
		serverAPI: filepath.Join(sockDir, "private", "server.sock"),
		agentAPI:  filepath.Join(sockDir, "public", "agent.sock"),
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	serverConf := filepath.Join(dataDir, "server.conf")
	writeFile(t, serverConf, fmt.Sprintf(serverConfTmpl,
		port, s.serverAPI, td.Name(), filepath.Join(dataDir, "server"), opts.X509SVIDTTL,
		filepath.Join(dataDir, "server", "datastore.sqlite3")))
	serverExited := s.run(t, "spire-server", filepath.Join(dataDir, "server.log"), "run", "-config", serverConf)
	s.waitHealthy(t, "spire-server", s.serverAPI, serverExited)

	token := strings.TrimPrefix(strings.TrimSpace(s.server(t, "token", "generate", "-spiffeID", s.agentID().String(), "-ttl", "600")), "Token: ")
	if token == "" {
		t.Fatal("spiretest: spire-server token generate printed no token")
	}
	agentConf := filepath.Join(dataDir, "agent.conf")
	writeFile(t, agentConf, fmt.Sprintf(agentConfTmpl,
		filepath.Join(dataDir, "agent"), port, s.agentAPI, td.Name()))
	agentExited := s.run(t, "spire-agent", filepath.Join(dataDir, "agent.log"), "run", "-config", agentConf, "-joinToken", token)
	s.waitHealthy(t, "spire-agent", s.agentAPI, agentExited)
	if err := os.Chmod(s.agentAPI, 0o777); err != nil {
		t.Fatalf("spiretest: open the Workload API socket to every uid: %v", err)
	}
	return s
}

const serverConfTmpl = `server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = "DEBUG"
    default_x509_svid_ttl = "%s"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
`

const agentConfTmpl = `agent {
    data_dir = %q
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_domain = %q
    insecure_bootstrap = true
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
`

// Dir returns the directory holding spire-server and spire-agent: the value
// of WRIT_SPIRE_DIR, or else the cache directory of .ci/tools.sh. If the
// binaries are missing it calls testenv.Missing, which skips t (or fails it
// under WRIT_INTEGRATION=require).
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvDir)
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err == nil {
			dir = filepath.Join(cache, "writ", "spire-"+spireVersion)
		}
	}
	for _, name := range []string{"spire-server", "spire-agent"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); dir == "" || err != nil || fi.Mode()&0o111 == 0 {
			testenv.Missing(t, "spire", fmt.Sprintf("no executable %s in %q (set %s); build it with: bash .ci/tools.sh spire", name, dir, EnvDir))
		}
	}
	return dir
}

// TrustDomain returns the trust domain of the server.
func (s *SPIRE) TrustDomain() spiffeid.TrustDomain { return s.td }

// WorkloadSocket returns the agent's Workload API address,
// "unix:///…/agent.sock", as SPIFFE_ENDPOINT_SOCKET expects it.
func (s *SPIRE) WorkloadSocket() string { return "unix://" + s.agentAPI }

// ID returns the SPIFFE ID with path p in the server's trust domain.
func (s *SPIRE) ID(t testing.TB, p string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromPath(s.td, p)
	if err != nil {
		t.Fatalf("spiretest: SPIFFE ID path %q: %v", p, err)
	}
	return id
}

func (s *SPIRE) agentID() spiffeid.ID { return spiffeid.RequireFromPath(s.td, AgentID) }

// CreateEntry registers spiffeID for workloads under the agent that match
// every selector (for example "unix:uid:1000"), with the X.509-SVID TTL of
// Options, and returns the entry's ID. The agent learns of it within a few
// seconds; use WaitForSVID to wait for it.
func (s *SPIRE) CreateEntry(t testing.TB, spiffeID string, selectors ...string) (entryID string) {
	t.Helper()
	if len(selectors) == 0 {
		t.Fatal("spiretest: CreateEntry needs at least one selector")
	}
	args := []string{"entry", "create", "-output", "json",
		"-parentID", s.agentID().String(), "-spiffeID", spiffeID,
		"-x509SVIDTTL", strconv.Itoa(int(s.ttl.Seconds()))}
	for _, sel := range selectors {
		args = append(args, "-selector", sel)
	}
	out := s.server(t, args...)
	var resp struct {
		Results []struct {
			Status struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
			Entry struct {
				ID string `json:"id"`
			} `json:"entry"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Results) != 1 {
		t.Fatalf("spiretest: entry create printed %q: %v", out, err)
	}
	r := resp.Results[0]
	if r.Status.Code != 0 || r.Entry.ID == "" {
		t.Fatalf("spiretest: entry create %s: status %d %s", spiffeID, r.Status.Code, r.Status.Message)
	}
	return r.Entry.ID
}

// DeleteEntry deletes a registration entry. The agent stops serving its
// SVID within a few seconds; an SVID already handed out stays valid until it
// expires.
func (s *SPIRE) DeleteEntry(t testing.TB, entryID string) {
	t.Helper()
	s.server(t, "entry", "delete", "-entryID", entryID)
}

// BundleJSON returns the trust domain's bundle in the SPIFFE bundle format
// (a JWKS holding the X.509 authorities and the JWT-SVID signing keys), as
// `spire-server bundle show -format spiffe` prints it.
func (s *SPIRE) BundleJSON(t testing.TB) []byte {
	t.Helper()
	return []byte(s.server(t, "bundle", "show", "-format", "spiffe"))
}

// WaitForSVID polls the Workload API, as the calling process, until it serves
// an X.509-SVID for spiffeID, and fails t if ctx ends first. Only entries
// whose selectors match the test process (for example its uid) can be
// waited for this way.
func (s *SPIRE) WaitForSVID(t testing.TB, ctx context.Context, spiffeID string) {
	t.Helper()
	var last error
	for {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		svids, err := workloadapi.FetchX509SVIDs(fctx, workloadapi.WithAddr(s.WorkloadSocket()))
		cancel()
		if err == nil {
			for _, svid := range svids {
				if svid.ID.String() == spiffeID {
					return
				}
			}
			err = fmt.Errorf("%d other SVIDs served", len(svids))
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("spiretest: no X.509-SVID for %s from the Workload API: %v (last: %v)", spiffeID, ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// server runs a spire-server CLI command against the server API socket and
// returns its standard output.
func (s *SPIRE) server(t testing.TB, args ...string) string {
	t.Helper()
	args = append(args, "-socketPath", s.serverAPI)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "spire-server"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("spiretest: spire-server %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// run starts a SPIRE binary, logging to logPath, and kills it when t ends.
// The returned channel is closed when the process exits.
func (s *SPIRE) run(t testing.TB, name, logPath string, args ...string) <-chan struct{} {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatalf("spiretest: start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log (%s):\n%s", name, logPath, b)
		}
	})
	return exited
}

// waitHealthy polls `<name> healthcheck` until it succeeds, failing t at
// once if the process exits (a bad configuration).
func (s *SPIRE) waitHealthy(t testing.TB, name, socket string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var out []byte
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err = exec.CommandContext(ctx, filepath.Join(s.bin, name), "healthcheck", "-socketPath", socket).CombinedOutput()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("spiretest: %s exited while starting (its log follows)", name)
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("spiretest: %s not healthy after %s: %v\n%s", name, startTimeout, err, out)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("spiretest: %v", err)
	}
}
