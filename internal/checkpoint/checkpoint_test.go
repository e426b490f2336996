package checkpoint_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newStore(t *testing.T) (*boltstore.Store, *audit.Log) {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	l, err := audit.New(audit.Config{Store: s, Now: func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return s, l
}

func appendN(t *testing.T, l *audit.Log, n int) {
	t.Helper()
	for i := range n {
		if _, err := l.Append(t.Context(), audit.Event{Action: "grant", GrantID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func newSigner(t *testing.T) (note.Signer, note.Verifier, string) {
	t.Helper()
	skey, vkey, err := audit.GenerateLedgerKey(rand.Reader, "test/log")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	return s, v, vkey
}

// recorder is a witness that records what it receives and fails the first
// failures attempts.
type recorder struct {
	mu       sync.Mutex
	got      [][]byte
	failures int
	ch       chan []byte
}

func (r *recorder) Name() string { return "recorder" }
func (r *recorder) Witness(_ context.Context, signed []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures > 0 {
		r.failures--
		return errors.New("witness down")
	}
	r.got = append(r.got, signed)
	if r.ch != nil {
		r.ch <- signed
	}
	return nil
}

// The checkpointer signs at EveryRecords records, at Every (injected clock)
// when the tree grew, not when it did not, and at shutdown; each checkpoint
// is stored, verifies with the key and matches the tree.
func TestCheckpointer_Schedule(t *testing.T) {
	t.Parallel()
	s, l := newStore(t)
	signer, verifier, _ := newSigner(t)
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	rec := &recorder{}
	cp, err := checkpoint.New(t.Context(), checkpoint.Config{Store: s, Signer: signer, EveryRecords: 10, Every: time.Minute, Now: clock.Now, Witnesses: []checkpoint.Witness{rec}})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(want bool, what string) {
		t.Helper()
		got, err := cp.MaybeSign(t.Context())
		if err != nil || got != want {
			t.Fatalf("%s: MaybeSign() = %v, %v; want %v", what, got, err, want)
		}
	}
	sign(false, "empty ledger")
	appendN(t, l, 9)
	sign(false, "9 records, no time passed")
	appendN(t, l, 1)
	sign(true, "10 records")
	appendN(t, l, 3)
	clock.Add(59 * time.Second)
	sign(false, "3 records, 59s")
	clock.Add(time.Second)
	sign(true, "3 records, 60s")
	clock.Add(time.Hour)
	sign(false, "no new records, an hour")
	appendN(t, l, 2)
	if err := cp.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	size, signed, ok, err := s.LatestCheckpoint(t.Context())
	if err != nil || !ok || size != 15 {
		t.Fatalf("LatestCheckpoint() after Close = %d, %v, %v; want size 15 (signed at shutdown)", size, ok, err)
	}
	c, err := audit.OpenCheckpoint(signed, verifier)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := audit.TreeHash(t.Context(), s, 15)
	if c.Size != 15 || c.Hash != root || c.Origin != "test/log" {
		t.Errorf("checkpoint = %+v, want size 15, root %v", c, root)
	}
	if got := string(cp.Latest()); got != string(signed) {
		t.Errorf("Latest() = %q, want the stored checkpoint", got)
	}
	var sizes []int64
	for _, n := range rec.got {
		c, err := audit.OpenCheckpoint(n, verifier)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, c.Size)
	}
	if fmt.Sprint(sizes) != "[10 13 15]" {
		t.Errorf("witness received sizes %v, want [10 13 15]", sizes)
	}

	// A restarted checkpointer continues from the stored one.
	cp2, err := checkpoint.New(t.Context(), checkpoint.Config{Store: s, Signer: signer, EveryRecords: 10, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if signed, err := cp2.SignNow(t.Context()); err != nil || signed {
		t.Errorf("SignNow() after restart with no new records = %v, %v; want false", signed, err)
	}
	_ = cp2.Close(t.Context())
}

// Run is woken by appends (the store's OnAppend hook) and signs in the
// background; a witness that fails is retried, each failure counted in
// writ_ledger_witness_failures_total, and nothing blocks the appends.
func TestCheckpointer_RunAndWitnessRetry(t *testing.T) {
	t.Parallel()
	s, l := newStore(t)
	signer, _, _ := newSigner(t)
	reg := prometheus.NewRegistry()
	rec := &recorder{failures: 3, ch: make(chan []byte, 10)}
	now := func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }
	instant := func(time.Duration) <-chan time.Time {
		ch := make(chan time.Time, 1)
		ch <- time.Time{}
		return ch
	}
	cp, err := checkpoint.New(t.Context(), checkpoint.Config{Store: s, Signer: signer, EveryRecords: 5, Every: time.Hour,
		Now: now, After: instant, Witnesses: []checkpoint.Witness{rec}, Metrics: checkpoint.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	s.OnAppend(cp.Notify)
	go cp.Run()
	appendN(t, l, 5)
	select {
	case signed := <-rec.ch:
		if !strings.Contains(string(signed), "\n5\n") {
			t.Errorf("witnessed %q, want size 5", signed)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no checkpoint reached the witness")
	}
	if got := checkpointFailures(t, reg); got != 3 {
		t.Errorf("witness failures = %v, want 3", got)
	}
	s.OnAppend(nil)
	if err := cp.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func checkpointFailures(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "writ_ledger_witness_failures_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "recorder" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("writ_ledger_witness_failures_total{witness=recorder} not found")
	return 0
}

func TestDirAndWebhookWitness(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "w")
	dw, err := checkpoint.NewDirWitness(dir)
	if err != nil {
		t.Fatal(err)
	}
	signer, verifier, _ := newSigner(t)
	var notes [][]byte
	for i := range 3 {
		n, _ := audit.SignCheckpoint(audit.Checkpoint{Origin: "test/log", Size: int64(i + 1)}, signer)
		notes = append(notes, n)
		if err := dw.Witness(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(filepath.Join(dir, checkpoint.CheckpointsFile))
	split, err := audit.SplitNotes(data)
	if err != nil || len(split) != 3 {
		t.Fatalf("witness file holds %d notes (%v), want 3", len(split), err)
	}
	for i, n := range split {
		if c, err := audit.OpenCheckpoint(n.Note, verifier); err != nil || c.Size != int64(i+1) {
			t.Errorf("note %d = %+v, %v", i, c, err)
		}
	}

	var (
		mu   sync.Mutex
		got  []string
		fail = true
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			fail = false
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Header.Get("Content-Type")+"|"+string(b))
	}))
	defer srv.Close()
	ww, err := checkpoint.NewWebhookWitness(srv.URL+"/hook/SECRET", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ww.Name(), "SECRET") {
		t.Errorf("witness name %q shows the URL's path", ww.Name())
	}
	if err := ww.Witness(t.Context(), notes[0]); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("first POST err = %v, want a 503 error without the URL path", err)
	}
	if err := ww.Witness(t.Context(), notes[0]); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "text/plain; charset=utf-8|"+string(notes[0]) {
		t.Errorf("webhook received %q", got)
	}
	if _, err := checkpoint.NewWebhookWitness("ftp://x", nil); err == nil {
		t.Error("ftp webhook accepted")
	}
}

// The HTTP endpoints serve the checkpoint, the key and proofs that the
// library's verifiers (tlog.CheckRecord, tlog.CheckTree) accept; bad
// parameters are 400 with a message.
func TestHandler(t *testing.T) {
	t.Parallel()
	s, l := newStore(t)
	signer, verifier, vkey := newSigner(t)
	cp, err := checkpoint.New(t.Context(), checkpoint.Config{Store: s, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close(t.Context())
	srv := httptest.NewServer(checkpoint.Handler(checkpoint.HandlerConfig{Tree: s, Latest: cp.Latest, VerifierKey: vkey}))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(checkpoint.PathCheckpoint); code != http.StatusNotFound {
		t.Errorf("checkpoint before any = %d %q, want 404", code, body)
	}
	appendN(t, l, 21)
	if _, err := cp.SignNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	code, body := get(checkpoint.PathCheckpoint)
	c, err := audit.OpenCheckpoint([]byte(body), verifier)
	if code != 200 || err != nil || c.Size != 21 {
		t.Fatalf("checkpoint = %d, %+v, %v", code, c, err)
	}
	if code, body := get(checkpoint.PathKey); code != 200 || body != vkey+"\n" {
		t.Errorf("key = %d %q, want %q", code, body, vkey)
	}
	var raws [][]byte
	_ = s.ScanRecords(t.Context(), func(_ uint64, raw []byte) error { raws = append(raws, raw); return nil })
	for seq := 1; seq <= 21; seq++ {
		code, body := get(fmt.Sprintf("%s?seq=%d&size=21", checkpoint.PathInclusion, seq))
		p, err := checkpoint.ParseProof([]byte(body))
		if code != 200 || err != nil {
			t.Fatalf("inclusion %d = %d %q %v", seq, code, body, err)
		}
		if err := tlog.CheckRecord(p, 21, c.Hash, int64(seq-1), tlog.RecordHash(raws[seq-1])); err != nil {
			t.Errorf("tlog.CheckRecord(seq %d) = %v", seq, err)
		}
	}
	for old := int64(1); old <= 21; old++ {
		oldRoot, _ := audit.TreeHash(t.Context(), s, old)
		code, body := get(fmt.Sprintf("%s?old=%d&new=21", checkpoint.PathConsistency, old))
		p, err := checkpoint.ParseProof([]byte(body))
		if code != 200 || err != nil {
			t.Fatalf("consistency %d = %d %q %v", old, code, body, err)
		}
		if err := tlog.CheckTree(p, 21, c.Hash, old, oldRoot); err != nil {
			t.Errorf("tlog.CheckTree(%d -> 21) = %v", old, err)
		}
	}
	for _, tc := range []struct{ path, want string }{
		{checkpoint.PathConsistency, "old is required"},
		{checkpoint.PathConsistency + "?old=1", "new is required"},
		{checkpoint.PathConsistency + "?old=x&new=2", `old="x" is not a non-negative integer`},
		{checkpoint.PathConsistency + "?old=1&old=2&new=3", "old is required, once"},
		{checkpoint.PathConsistency + "?old=5&new=4", "old 5: must be in 1..4"},
		{checkpoint.PathConsistency + "?old=1&new=22", "new 22: the ledger holds 21 records"},
		{checkpoint.PathInclusion + "?seq=0&size=3", "seq 0: must be in 1..3"},
		{checkpoint.PathInclusion + "?seq=1&size=-1", "size=\"-1\" is not"},
		{checkpoint.PathInclusion + "?seq=1&size=99", "size 99: the ledger holds 21 records"},
	} {
		code, body := get(tc.path)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %q, want 400 with %q", tc.path, code, body, tc.want)
		}
	}
}

func TestParseProof(t *testing.T) {
	t.Parallel()
	h := tlog.RecordHash([]byte("a"))
	p, err := checkpoint.ParseProof(checkpoint.FormatProof([]tlog.Hash{h, h}))
	if err != nil || len(p) != 2 || p[0] != h {
		t.Fatalf("round trip = %v, %v", p, err)
	}
	for _, tc := range []struct{ body, want string }{
		{h.String(), "no final newline"},
		{h.String() + "\nAAAA\n", "proof line 2"},
		{"\n", "proof line 1"},
	} {
		if _, err := checkpoint.ParseProof([]byte(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseProof(%q) = %v, want %q", tc.body, err, tc.want)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), checkpoint.KeyFile)
	s1, v1, err := checkpoint.LoadOrCreateKey(path, "", "host/writ-ledger")
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 || s1.Name() != "host/writ-ledger" {
		t.Errorf("key file mode %v, name %q", fi.Mode().Perm(), s1.Name())
	}
	s2, v2, err := checkpoint.LoadOrCreateKey(path, "host/writ-ledger", "ignored")
	if err != nil || v2 != v1 || s2.KeyHash() != s1.KeyHash() {
		t.Fatalf("reload = %v, %q vs %q", err, v2, v1)
	}
	if _, _, err := checkpoint.LoadOrCreateKey(path, "another", ""); err == nil || !strings.Contains(err.Error(), "fixed when the key is created") {
		t.Errorf("other origin err = %v", err)
	}
	_ = os.Chmod(path, 0o644)
	if _, _, err := checkpoint.LoadOrCreateKey(path, "", ""); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key err = %v", err)
	}
}

// FuzzParseProof: a proof body of any content never panics, and an error
// names the line.
func FuzzParseProof(f *testing.F) {
	h := tlog.RecordHash([]byte("a"))
	f.Add(checkpoint.FormatProof([]tlog.Hash{h, h}))
	f.Add([]byte(""))
	f.Add([]byte("\n"))
	f.Add([]byte(h.String()))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := checkpoint.ParseProof(body)
		if err != nil {
			if !strings.Contains(err.Error(), "proof") {
				t.Fatalf("ParseProof() err = %v, want it to say proof", err)
			}
			return
		}
		if got := checkpoint.FormatProof(p); string(got) != string(body) {
			t.Fatalf("ParseProof(%q) = %d hashes that format as %q", body, len(p), got)
		}
	})
}
