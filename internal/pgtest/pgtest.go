// Package pgtest runs a real PostgreSQL server for tests.
//
// Start looks for initdb and postgres in $WRIT_PG_BIN, then in the newest
// /usr/lib/postgresql/<version>/bin (Debian's "postgresql" package), then
// on $PATH. Without them, tests are skipped, or fail under
// WRIT_INTEGRATION=require (see internal/testenv). Install them with
//
//	apt-get update && apt-get install -y postgresql
//
// PostgreSQL refuses to run as root. When the test runs as root (as in CI),
// Start runs initdb and postgres as the "postgres" OS user, which the
// Debian package creates, in a directory under os.TempDir() owned by that
// user; otherwise it runs them as the current user in t.TempDir().
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/writ-dev/writ/internal/testenv"
)

// startTimeout bounds how long Start waits for a server to accept
// connections. A loaded two-core CI machine running tests with -race needs
// headroom.
const startTimeout = 60 * time.Second

// install says how to provide PostgreSQL, for testenv.Missing.
const install = "apt-get update && apt-get install -y postgresql (or set WRIT_PG_BIN to a directory holding initdb and postgres)"

// Server is a running PostgreSQL server, stopped when the test ends.
type Server struct {
	// Addr is the server's TCP address, "127.0.0.1:PORT".
	Addr string
	// SuperUser is the name of the superuser role, "postgres".
	SuperUser string
	// Password is the superuser's password.
	Password string
	// DSN is a connection URL for the superuser to the "postgres" database,
	// with sslmode=disable.
	DSN string
}

// BinDir returns the directory holding initdb and postgres that Start would
// use, and whether one was found.
func BinDir() (string, bool) {
	var candidates []string
	if d := os.Getenv("WRIT_PG_BIN"); d != "" {
		candidates = append(candidates, d)
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versions, func(a, b string) int { return majorVersion(b) - majorVersion(a) })
	candidates = append(candidates, versions...)
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, d := range candidates {
		if executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "postgres")) {
			return d, true
		}
	}
	return "", false
}

// majorVersion returns the version in /usr/lib/postgresql/<version>/bin.
func majorVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// executable reports whether path is an executable regular file.
func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Start initializes a new database cluster, runs PostgreSQL on a free
// loopback port and waits until it accepts connections. Each call starts
// its own server, so tests may run in parallel. The server is stopped and
// its files removed in t.Cleanup; if the test failed, its log is written to
// t.Log first.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, ok := BinDir()
	if !ok {
		testenv.Missing(t, "postgresql", "no initdb and postgres binaries found; install with: "+install)
	}
	owner, err := runAs()
	if err != nil {
		testenv.Missing(t, "postgresql", err.Error())
	}
	dir, err := workDir(t, owner)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	password := testenv.RandomHex(16)
	if err := initdb(t, bin, dir, owner, password); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		s, err := start(t, bin, dir, owner, password)
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("pgtest: start postgres: %v", lastErr)
	return nil
}

// errPortTaken reports that another process took the port between picking
// and binding it.
var errPortTaken = errors.New("listen address already in use")

// osUser is the OS user the server runs as; nil means the current user.
type osUser struct {
	name     string
	uid, gid uint32
}

// runAs returns the user to run PostgreSQL as: nil when not root, else the
// "postgres" OS user.
func runAs() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as the \"postgres\" OS user, which does not exist (%v); install with: %s", err, install)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &osUser{name: u.Username, uid: uint32(uid), gid: uint32(gid)}, nil
}

// workDir returns an empty directory the server's user owns, removed when
// the test ends. As root it is created under os.TempDir() rather than in
// t.TempDir(), whose parent is private to root.
func workDir(t testing.TB, owner *osUser) (string, error) {
	t.Helper()
	if owner == nil {
		return t.TempDir(), nil
	}
	dir, err := os.MkdirTemp("", "writ-pgtest-")
	if err != nil {
		return "", fmt.Errorf("create work directory: %w", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chown(dir, int(owner.uid), int(owner.gid)); err != nil {
		return "", fmt.Errorf("hand %s to user %s: %w", dir, owner.name, err)
	}
	return dir, nil
}

// command returns cmd for bin/name with args, running as owner, with a
// clean environment (no PG* variables).
func command(ctx context.Context, bin, name string, owner *osUser, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC"}
	if owner != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: owner.uid, Gid: owner.gid}}
	}
	return cmd
}

// initdb creates the cluster in dir/data with superuser "postgres" whose
// password is password, and password (SCRAM) authentication everywhere.
func initdb(t testing.TB, bin, dir string, owner *osUser, password string) error {
	t.Helper()
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write password file: %w", err)
	}
	if owner != nil {
		if err := os.Chown(pwfile, int(owner.uid), int(owner.gid)); err != nil {
			return fmt.Errorf("hand password file to %s: %w", owner.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := command(ctx, bin, "initdb", owner,
		"-D", filepath.Join(dir, "data"),
		"-U", "postgres",
		"--pwfile="+pwfile,
		"--auth=scram-sha-256",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
		"--no-instructions",
	)
	out, err := cmd.CombinedOutput()
	_ = os.Remove(pwfile)
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// start runs one server attempt on a fresh port.
func start(t testing.TB, bin, dir string, owner *osUser, password string) (*Server, error) {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "sock")
	if err := os.MkdirAll(sock, 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if owner != nil {
		if err := os.Chown(sock, int(owner.uid), int(owner.gid)); err != nil {
			return nil, fmt.Errorf("hand socket directory to %s: %w", owner.name, err)
		}
	}
	logPath := filepath.Join(dir, "postgres-"+strconv.Itoa(port)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := command(context.Background(), bin, "postgres", owner,
		"-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(port),
		"-k", sock,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB",
		"-c", "max_connections=50",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("run postgres: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		// SIGINT is PostgreSQL's "fast" shutdown: roll back and exit.
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
	}
	dumpLog := func() {
		if data, err := os.ReadFile(logPath); err == nil {
			t.Logf("postgres log (%s):\n%s", logPath, data)
		}
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{
		Addr:      addr,
		SuperUser: "postgres",
		Password:  password,
		DSN:       (&url.URL{Scheme: "postgres", User: url.UserPassword("postgres", password), Host: addr, Path: "/postgres", RawQuery: "sslmode=disable"}).String(),
	}
	if err := waitReady(s.DSN, exited); err != nil {
		stop()
		data, _ := os.ReadFile(logPath)
		if strings.Contains(string(data), "could not bind") || strings.Contains(string(data), "already in use") {
			return nil, fmt.Errorf("%s: %w", addr, errPortTaken)
		}
		dumpLog()
		return nil, fmt.Errorf("%w (exit: %v)", err, waitErr)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			dumpLog()
		}
	})
	return s, nil
}

// waitReady connects to dsn until a query works, the process exits, or
// startTimeout passes.
func waitReady(dsn string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("postgres exited before accepting connections")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = ping(ctx, dsn)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("postgres exited before accepting connections")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("postgres not ready after %s: %v", startTimeout, last)
}

// ping connects to dsn and runs SELECT 1.
func ping(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// Exec runs each SQL statement as the superuser, failing the test on error.
func (s *Server) Exec(t testing.TB, statements ...string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), s.DSN)
	if err != nil {
		t.Fatalf("pgtest: connect as %s: %v", s.SuperUser, err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	for _, stmt := range statements {
		if _, err := conn.Exec(t.Context(), stmt); err != nil {
			t.Fatalf("pgtest: %s: %v", stmt, err)
		}
	}
}

// Login connects to database as user with password and runs SELECT 1. It
// returns the error of the first step that fails.
func (s *Server) Login(ctx context.Context, database, user, password string) error {
	dsn := (&url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: s.Addr, Path: "/" + database, RawQuery: "sslmode=disable"}).String()
	return ping(ctx, dsn)
}
