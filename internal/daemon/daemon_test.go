package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
	"github.com/writ-dev/writ/internal/store/boltstore"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// TestNew_FailedStartClosesEverything fails the last step of New (the
// JWT-SVID listener's address is taken) after the HTTP and workload
// listeners were serving: nothing New opened may outlive it (issue 12,
// item 7; today's bug: the workload listener kept serving against a closed
// store).
func TestNew_FailedStartClosesEverything(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cfg := env.config(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bundle := filepath.Join(env.dir, "jwt-bundle.json")
	if err := os.WriteFile(bundle, spiffetest.NewJWTAuthority(t, testTD).BundleJSON(t), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.SVID.JWTBundleFile = bundle
	cfg.JWTSVID = &JWTSVIDConfig{Listen: busy.Addr().String(), Audience: testBrokerID.String()}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	d, err := New(t.Context(), cfg, Options{GRPCListener: grpcLis, HTTPListener: httpLis})
	if err == nil {
		_ = d.Shutdown()
		t.Fatal("New() = nil error, want the JWT-SVID listener's bind error")
	}
	if !strings.Contains(err.Error(), "jwt_svid.listen") {
		t.Errorf("New() = %v, want it to name jwt_svid.listen", err)
	}
	for name, addr := range map[string]string{"workload": grpcLis.Addr().String(), "http": httpLis.Addr().String()} {
		if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			_ = c.Close()
			t.Errorf("the %s listener %s still accepts connections after a failed New", name, addr)
		}
	}
	// The store was closed: its file lock is free.
	s, err := boltstore.Open(filepath.Join(cfg.DataDir, "writ.db"), boltstore.Options{Timeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("open the store after a failed New: %v (want its lock released)", err)
	}
	_ = s.Close()
}

// TestShutdown_EndsOpenStreams: a workload waiting in WatchRequest must not
// hold up the graceful stop for the whole shutdown timeout (issue 12,
// item 6). The stream ends with UNAVAILABLE, and Shutdown reports a clean,
// graceful stop: it returns an error if it had to wait out the timeout
// (one minute here) and cancel calls.
func TestShutdown_EndsOpenStreams(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	d := start(t, t.Context(), env.config(t), Options{})
	client := env.dial(t, d)
	ctx := t.Context()
	resp, err := client.RequestAccess(ctx, &brokerv1.RequestAccessRequest{Entitlement: "orders-approved", Duration: durationpb.New(10 * time.Minute)})
	if err != nil {
		t.Fatalf("RequestAccess() = %v", err)
	}
	stream, err := client.WatchRequest(ctx, &brokerv1.WatchRequestRequest{RequestId: resp.GetRequest().GetId()})
	if err != nil {
		t.Fatalf("WatchRequest() = %v", err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("WatchRequest first Recv() = %v, want the pending request", err)
	}

	if err := d.Shutdown(); err != nil {
		t.Errorf("Shutdown() with a watching workload = %v, want a graceful stop", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("WatchRequest Recv() after Shutdown = %v, want Unavailable", err)
	}
	if err := d.Shutdown(); err != nil {
		t.Errorf("second Shutdown() = %v, want the first result (nil)", err)
	}
}

// TestRun_HangupIsIgnored: SIGHUP (here through Options.Hangup; the
// quickstart test sends a real one to the built binary) is logged and the
// daemon keeps serving; cancelling ctx then stops it cleanly.
func TestRun_HangupIsIgnored(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	hup := make(chan os.Signal) // unbuffered: the second send returns once Run handled the first
	var logs syncBuffer
	d := start(t, t.Context(), env.config(t), Options{Hangup: hup, LogOutput: &logs})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	hup <- syscall.SIGHUP
	hup <- syscall.SIGHUP
	if !strings.Contains(logs.String(), "ignoring signal") {
		t.Errorf("log lacks the ignored SIGHUP:\n%s", logs.String())
	}
	if _, err := env.dial(t, d).IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"}); err != nil {
		t.Errorf("IssueCredential() after SIGHUP = %v, want a credential", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
}

// TestNotifyHangup delivers a real SIGHUP to this process: with
// NotifyHangup in place it arrives on the channel instead of killing the
// process.
func TestNotifyHangup(t *testing.T) {
	hup, stop := NotifyHangup()
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if sig := <-hup; sig != syscall.SIGHUP {
		t.Errorf("received %v, want SIGHUP", sig)
	}
}

// TestRun_ListenerFailureStopsDaemon: a listener that stops by itself
// leaves the daemon half up; Run shuts everything down and returns the
// error, so writd exits non-zero for its supervisor.
func TestRun_ListenerFailureStopsDaemon(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := start(t, t.Context(), env.config(t), Options{GRPCListener: lis})
	_ = lis.Close()
	err = d.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "grpc server stopped") {
		t.Fatalf("Run() = %v, want the workload server's failure", err)
	}
	s, err := boltstore.Open(filepath.Join(env.config(t).DataDir, "writ.db"), boltstore.Options{Timeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("open the store after Run returned: %v (want it closed)", err)
	}
	_ = s.Close()
}

// TestLifecycle_StopOrder: listeners first, then background jobs
// (cancelled and awaited), then closers in reverse order of opening.
func TestLifecycle_StopOrder(t *testing.T) {
	t.Parallel()
	l := newLifecycle(t.Context())
	var order []string // appended by one goroutine at a time: stop runs the steps in sequence
	l.addCloser("store", func() error { order = append(order, "store"); return nil })
	l.addCloser("client", func() error { order = append(order, "client"); return errors.New("boom") })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	l.serveHTTP("http", &http.Server{Handler: http.NotFoundHandler()}, lis, "", "")
	l.goJob(func(ctx context.Context) {
		<-ctx.Done()
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			order = append(order, "job (listener still open)")
			return
		}
		order = append(order, "job")
	})

	err = l.stop(t.Context())
	want := []string{"job", "client", "store"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("stop order = %v, want %v (after the listener closed)", order, want)
	}
	if err == nil || !strings.Contains(err.Error(), "close client: boom") {
		t.Errorf("stop() = %v, want the closer's error", err)
	}
}

// TestHealthAndReadiness: /healthz is liveness; /readyz says ready only
// when started, not stopping, the ledger is writable and the SVID fresh.
func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	d := start(t, t.Context(), env.config(t), Options{})
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + d.HTTPAddr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("GET /readyz = %d %q, want 200 ready", code, body)
	}

	svid := env.workload.SVID
	expired := svid.Certificates[0].NotAfter.Add(time.Second)
	tests := []struct {
		name string
		r    func() *readiness
		want string
	}{
		{"starting", func() *readiness { return &readiness{} }, "not ready: starting"},
		{"shutting down", func() *readiness {
			r := &readiness{}
			r.setStarted()
			r.setStopping()
			return r
		}, "not ready: shutting down"},
		{"ledger not writable", func() *readiness {
			r := &readiness{ledger: func() error { return errors.New("fsync failed") }}
			r.setStarted()
			return r
		}, "not ready: ledger not writable: fsync failed"},
		{"vault unreachable", func() *readiness {
			r := &readiness{vault: func() bool { return false }}
			r.setStarted()
			return r
		}, "not ready: vault unreachable"},
		{"svid expired", func() *readiness {
			r := &readiness{svid: env.workload, now: func() time.Time { return expired }}
			r.setStarted()
			return r
		}, "not ready: X.509-SVID expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.r().readiness(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), tt.want) {
				t.Errorf("readyz = %d %q, want 503 with %q", rec.Code, rec.Body.String(), tt.want)
			}
			rec = httptest.NewRecorder()
			tt.r().liveness(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != http.StatusOK {
				t.Errorf("healthz = %d, want 200 whatever readiness says", rec.Code)
			}
		})
	}
}
