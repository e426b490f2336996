package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/internal/notify"
)

// epoch is the pinned test clock.
var epoch = time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)

// receiver is a webhook endpoint that answers each request with the next of
// its statuses (the last one repeating); status 0 aborts the connection.
type receiver struct {
	srv      *httptest.Server
	requests atomic.Int32

	mu       sync.Mutex
	statuses []int
	bodies   [][]byte
	headers  []http.Header
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	rc := &receiver{statuses: statuses}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(rc.requests.Add(1))
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, body)
		rc.headers = append(rc.headers, r.Header.Clone())
		status := http.StatusOK
		if len(rc.statuses) > 0 {
			status = rc.statuses[min(n, len(rc.statuses))-1]
		}
		rc.mu.Unlock()
		if status == 0 {
			panic(http.ErrAbortHandler) // the client sees a network error
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// newWebhook returns a fast-retrying Webhook posting to url.
func newWebhook(t *testing.T, url string, edit func(*notify.Config)) *notify.Webhook {
	t.Helper()
	cfg := notify.Config{
		URL:         url,
		BaseBackoff: time.Millisecond,
		Timeout:     5 * time.Second,
		Now:         func() time.Time { return epoch },
	}
	if edit != nil {
		edit(&cfg)
	}
	w, err := notify.New(cfg)
	if err != nil {
		t.Fatalf("New() err = %v", err)
	}
	return w
}

// closeWebhook closes w with a generous deadline and fails the test if it
// does not drain.
func closeWebhook(t *testing.T, w *notify.Webhook) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close() err = %v", err)
	}
}

func pending(id string) notify.Event {
	return notify.Event{
		Kind:        notify.KindRequestPending,
		RequestID:   id,
		Entitlement: "db-admin",
		Beneficiary: "spiffe://example.test/ns/prod/sa/api",
		Actor:       "oidc:https://idp.example.test#alice",
		Reason:      "fix outage",
		Until:       epoch.Add(time.Hour),
		Recipients:  []string{"dba"},
		Fields:      map[string]string{"ticket": "INC-42"},
	}
}

func TestWebhook_Notify_DeliversJSON(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	w := newWebhook(t, rc.srv.URL+"/hook", nil)
	w.Notify(t.Context(), pending("req-1"))
	closeWebhook(t, w)

	if got := rc.requests.Load(); got != 1 {
		t.Fatalf("requests = %d, want 1", got)
	}
	var got, want map[string]any
	if err := json.Unmarshal(rc.bodies[0], &got); err != nil {
		t.Fatalf("decode body %q: %v", rc.bodies[0], err)
	}
	wantJSON := `{
		"text": "[writ] request.pending req-1: db-admin for spiffe://example.test/ns/prod/sa/api by oidc:https://idp.example.test#alice until 2030-01-01T10:00:00Z (to dba); reason: \"fix outage\"",
		"writ": {
			"kind": "request.pending",
			"time": "2030-01-01T09:00:00Z",
			"request_id": "req-1",
			"entitlement": "db-admin",
			"beneficiary": "spiffe://example.test/ns/prod/sa/api",
			"actor": "oidc:https://idp.example.test#alice",
			"reason": "fix outage",
			"until": "2030-01-01T10:00:00Z",
			"recipients": ["dba"],
			"fields": {"ticket": "INC-42"}
		}
	}`
	if err := json.Unmarshal([]byte(wantJSON), &want); err != nil {
		t.Fatalf("decode want: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("posted JSON mismatch (-want +got):\n%s", diff)
	}
	if ct := rc.headers[0].Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if diff := cmp.Diff(notify.Stats{Sent: 1}, w.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}
}

func TestWebhook_Notify_Retries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		statuses     []int
		maxAttempts  int
		wantRequests int32
		wantStats    notify.Stats
	}{
		{"two server errors then success", []int{500, 503, 200}, 5, 3, notify.Stats{Sent: 1}},
		{"two network errors then success", []int{0, 0, 204}, 5, 3, notify.Stats{Sent: 1}},
		{"rate limited then success", []int{429, 200}, 5, 2, notify.Stats{Sent: 1}},
		{"server errors until attempts run out", []int{502}, 3, 3, notify.Stats{Failed: 1}},
		{"bad request is not retried", []int{400}, 5, 1, notify.Stats{Failed: 1}},
		{"not found is not retried", []int{404}, 5, 1, notify.Stats{Failed: 1}},
		{"gone is not retried", []int{410}, 5, 1, notify.Stats{Failed: 1}},
		{"redirect is neither followed nor retried", []int{http.StatusTemporaryRedirect}, 5, 1, notify.Stats{Failed: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t, tc.statuses...)
			w := newWebhook(t, rc.srv.URL, func(c *notify.Config) { c.MaxAttempts = tc.maxAttempts })
			w.Notify(t.Context(), pending("req-1"))
			closeWebhook(t, w)
			if got := rc.requests.Load(); got != tc.wantRequests {
				t.Errorf("requests = %d, want %d", got, tc.wantRequests)
			}
			if diff := cmp.Diff(tc.wantStats, w.Stats()); diff != "" {
				t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// blockingReceiver accepts requests but answers none until released; it
// signals each arrival on arrived.
func blockingReceiver(t *testing.T) (srv *httptest.Server, arrived <-chan struct{}, release func()) {
	t.Helper()
	arr := make(chan struct{}, 100)
	rel := make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arr <- struct{}{}
		select {
		case <-rel:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	var once sync.Once
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(release) // runs before srv.Close
	return srv, arr, release
}

func TestWebhook_Notify_QueueFullDropsWithoutBlocking(t *testing.T) {
	t.Parallel()
	srv, arrived, release := blockingReceiver(t)
	w := newWebhook(t, srv.URL, func(c *notify.Config) { c.QueueSize = 1 })

	w.Notify(t.Context(), pending("in-flight"))
	select {
	case <-arrived: // the worker is now stuck on the first event
	case <-time.After(10 * time.Second):
		t.Fatal("first notification never reached the receiver")
	}
	w.Notify(t.Context(), pending("queued")) // fills the queue

	const extra = 50
	start := time.Now()
	for i := range extra {
		w.Notify(t.Context(), pending("overflow-"+string(rune('a'+i%26))))
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("%d Notify calls on a full queue took %s, want them not to block", extra, elapsed)
	}
	if got := w.Stats().Dropped; got != extra {
		t.Errorf("Stats().Dropped = %d, want %d", got, extra)
	}

	release()
	closeWebhook(t, w)
	if diff := cmp.Diff(notify.Stats{Sent: 2, Dropped: extra}, w.Stats()); diff != "" {
		t.Errorf("Stats() after Close mismatch (-want +got):\n%s", diff)
	}
}

func TestWebhook_Close_Drains(t *testing.T) {
	t.Parallel()
	// Delivery is at least once: an HTTP client may replay a POST on a
	// keep-alive connection the server dropped, so count distinct events.
	// The receiver holds every delivery until gate is closed, so that the
	// events stay queued when Close starts.
	var mu sync.Mutex
	seen := map[string]bool{}
	gate, arrived := make(chan struct{}), make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-r.Context().Done():
		}
		var body struct {
			Writ struct {
				RequestID string `json:"request_id"`
			} `json:"writ"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		seen[body.Writ.RequestID] = true
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	w := newWebhook(t, srv.URL, nil)

	const n = 20
	for i := range n {
		w.Notify(t.Context(), pending("req-"+string(rune('a'+i))))
	}
	<-arrived // the first event is in flight, the others queued behind it
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		closed <- w.Close(ctx)
	}()
	close(gate)
	if err := <-closed; err != nil {
		t.Fatalf("Close() err = %v", err)
	}
	mu.Lock()
	delivered := len(seen)
	mu.Unlock()
	if delivered != n {
		t.Errorf("distinct events delivered before Close returned = %d, want %d", delivered, n)
	}
	if diff := cmp.Diff(notify.Stats{Sent: n}, w.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}

	// Closing again is harmless; notifying after Close drops.
	closeWebhook(t, w)
	w.Notify(t.Context(), pending("late"))
	if diff := cmp.Diff(notify.Stats{Sent: n, Dropped: 1}, w.Stats()); diff != "" {
		t.Errorf("Stats() after late Notify mismatch (-want +got):\n%s", diff)
	}
}

func TestWebhook_Close_DeadlineAbandonsQueue(t *testing.T) {
	t.Parallel()
	srv, arrived, _ := blockingReceiver(t)
	w := newWebhook(t, srv.URL, nil)
	for _, id := range []string{"a", "b", "c"} {
		w.Notify(t.Context(), pending(id))
	}
	<-arrived

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := w.Close(ctx)
	if !errors.Is(err, notify.ErrUndelivered) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close() err = %v, want ErrUndelivered and DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Close() took %s, want about its deadline", elapsed)
	}
	if diff := cmp.Diff(notify.Stats{Dropped: 3}, w.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}
}

func TestWebhook_NeverLogsURL(t *testing.T) {
	t.Parallel()
	const secret = "T0000-B0000-SUPERSECRET"
	rc := newReceiver(t, 500)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connection refused from now on

	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, url := range []string{rc.srv.URL + "/services/" + secret, downURL + "/services/" + secret} {
		w := newWebhook(t, url, func(c *notify.Config) { c.MaxAttempts = 2; c.Logger = logger; c.QueueSize = 1 })
		w.Notify(t.Context(), pending("req-1"))
		w.Notify(t.Context(), pending("req-2")) // may be dropped: logged too
		w.Notify(t.Context(), pending("req-3"))
		closeWebhook(t, w)
		if s := w.Stats(); s.Failed == 0 {
			t.Errorf("Stats() = %+v, want failures", s)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if logs.Len() == 0 {
		t.Fatal("no logs written; the test proves nothing")
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("logs contain the webhook URL:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNew_InvalidConfig(t *testing.T) {
	t.Parallel()
	const secret = "SUPERSECRET"
	tests := []struct {
		name string
		cfg  notify.Config
	}{
		{"missing url", notify.Config{}},
		{"url without scheme", notify.Config{URL: "hooks.example.test/services/" + secret}},
		{"ftp url", notify.Config{URL: "ftp://hooks.example.test/" + secret}},
		{"plain http to a remote host", notify.Config{URL: "http://hooks.example.test/services/" + secret}},
		{"negative queue size", notify.Config{URL: "https://hooks.example.test/" + secret, QueueSize: -1}},
		{"negative attempts", notify.Config{URL: "https://hooks.example.test/" + secret, MaxAttempts: -1}},
		{"negative timeout", notify.Config{URL: "https://hooks.example.test/" + secret, Timeout: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, err := notify.New(tc.cfg)
			if !errors.Is(err, notify.ErrInvalidConfig) {
				if w != nil {
					_ = w.Close(t.Context())
				}
				t.Fatalf("New() err = %v, want ErrInvalidConfig", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("New() err = %q, want it not to repeat the URL", err)
			}
		})
	}
}

func TestNew_AcceptsURL(t *testing.T) {
	t.Parallel()
	for _, url := range []string{
		"https://hooks.example.test/services/x",
		"http://127.0.0.1:8080/hook",
		"http://localhost/hook",
		"http://[::1]:9/hook",
	} {
		w, err := notify.New(notify.Config{URL: url})
		if err != nil {
			t.Errorf("New(%q) err = %v, want nil", url, err)
			continue
		}
		if err := w.Close(t.Context()); err != nil {
			t.Errorf("Close() err = %v", err)
		}
	}
}

func TestNop(t *testing.T) {
	t.Parallel()
	var n notify.Nop
	n.Notify(t.Context(), pending("req-1"))
	if err := n.Close(t.Context()); err != nil {
		t.Errorf("Nop.Close() err = %v, want nil", err)
	}
}
