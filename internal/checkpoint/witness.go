package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CheckpointsFile is the file, in a witness directory and in the state
// directory of writ audit witness, that holds the checkpoints witnessed so
// far: signed notes, concatenated, oldest first (audit.SplitNotes reads it).
const CheckpointsFile = "checkpoints.log"

// Witness receives each new checkpoint so that it leaves the broker's
// machine. Witness must be safe to call again with the same note after a
// failure (the Checkpointer retries).
type Witness interface {
	// Name identifies the witness in logs and metrics; it holds no secret.
	Name() string
	// Witness delivers one signed checkpoint note.
	Witness(ctx context.Context, signed []byte) error
}

// Retry backoff for witnesses: doubling from retryBase up to retryMax.
const (
	retryBase = time.Second
	retryMax  = time.Minute
	// maxPending bounds the checkpoints queued for a witness that is down;
	// the oldest is dropped first (each checkpoint extends the previous
	// ones, so the newest one is what matters).
	maxPending = 64
)

// Metrics are the witness metrics. A nil *Metrics records nothing.
type Metrics struct {
	failures *prometheus.CounterVec
	size     *prometheus.GaugeVec
}

// NewMetrics creates the witness metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_ledger_witness_failures_total",
			Help: "Failed attempts to hand a ledger checkpoint to a witness (each is retried).",
		}, []string{"witness"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "writ_ledger_witnessed_size",
			Help: "Tree size of the newest ledger checkpoint each witness has received.",
		}, []string{"witness"}),
	}
	reg.MustRegister(m.failures, m.size)
	return m
}

func (m *Metrics) failed(name string) {
	if m != nil {
		m.failures.WithLabelValues(name).Inc()
	}
}

func (m *Metrics) delivered(name string, size int64) {
	if m != nil {
		m.size.WithLabelValues(name).Set(float64(size))
	}
}

// worker delivers checkpoints to one witness, in order, retrying failures.
type worker struct {
	w      Witness
	c      *Checkpointer
	signal chan struct{}

	mu     sync.Mutex
	queue  [][]byte
	closed bool
}

func newWorker(w Witness, c *Checkpointer) *worker {
	return &worker{w: w, c: c, signal: make(chan struct{}, 1)}
}

func (wk *worker) enqueue(signed []byte) {
	wk.mu.Lock()
	wk.queue = append(wk.queue, signed)
	if len(wk.queue) > maxPending {
		wk.queue = wk.queue[1:]
		wk.c.cfg.Logger.Warn("ledger witness is behind: oldest pending checkpoint dropped", "witness", wk.w.Name())
	}
	wk.mu.Unlock()
	wk.poke()
}

func (wk *worker) closeQueue() {
	wk.mu.Lock()
	wk.closed = true
	wk.mu.Unlock()
	wk.poke()
}

func (wk *worker) poke() {
	select {
	case wk.signal <- struct{}{}:
	default:
	}
}

// next returns the oldest pending checkpoint; done is true when the queue
// is empty and closed.
func (wk *worker) next() (signed []byte, done bool) {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	if len(wk.queue) > 0 {
		return wk.queue[0], false
	}
	return nil, wk.closed
}

func (wk *worker) pop() {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	if len(wk.queue) > 0 {
		wk.queue = wk.queue[1:]
	}
}

func (wk *worker) run(ctx context.Context) {
	log, name := wk.c.cfg.Logger, wk.w.Name()
	for {
		signed, done := wk.next()
		if done {
			return
		}
		if signed == nil {
			select {
			case <-wk.signal:
				continue
			case <-ctx.Done():
				return
			}
		}
		for attempt := 0; ; attempt++ {
			err := wk.w.Witness(ctx, signed)
			if err == nil {
				break
			}
			wk.c.cfg.Metrics.failed(name)
			log.Error("ledger witness failed; retrying", "witness", name, "attempt", attempt+1, "error", err)
			select {
			case <-wk.c.cfg.After(min(retryBase<<min(attempt, 6), retryMax)):
			case <-ctx.Done():
				return
			}
		}
		if c, err := parseSize(signed); err == nil {
			wk.c.cfg.Metrics.delivered(name, c)
		}
		wk.pop()
	}
}

// parseSize returns the tree size line of a signed checkpoint note.
func parseSize(signed []byte) (int64, error) {
	var size int64
	parts := bytes.SplitN(signed, []byte("\n"), 3)
	if len(parts) < 3 {
		return 0, errors.New("short checkpoint")
	}
	_, err := fmt.Sscanf(string(parts[1]), "%d", &size)
	return size, err
}

// DirWitness appends each checkpoint to CheckpointsFile in a directory,
// which should be on another volume or host (an NFS mount, a synced
// folder) and ideally append-only (chattr +a).
type DirWitness struct{ dir string }

// NewDirWitness returns a witness writing into dir, creating it (0700) if
// needed.
func NewDirWitness(dir string) (*DirWitness, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("witness dir: %w", err)
	}
	return &DirWitness{dir: dir}, nil
}

// Name implements Witness.
func (d *DirWitness) Name() string { return "dir:" + d.dir }

// Witness implements Witness: append and fsync.
func (d *DirWitness) Witness(_ context.Context, signed []byte) error {
	f, err := os.OpenFile(filepath.Join(d.dir, CheckpointsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(signed)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// WebhookWitness POSTs each checkpoint note (Content-Type text/plain) to a
// URL; any 2xx answer is success.
type WebhookWitness struct {
	url    string
	name   string
	client *http.Client
}

// NewWebhookWitness returns a witness POSTing to rawURL (http or https).
// client nil means a client with a 10 s timeout.
func NewWebhookWitness(rawURL string, client *http.Client) (*WebhookWitness, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("witness webhook %q: not an http(s) URL", rawURL)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	// The path and query may hold a token: the name shows scheme and host.
	return &WebhookWitness{url: rawURL, name: "webhook:" + u.Scheme + "://" + u.Host, client: client}, nil
}

// Name implements Witness.
func (w *WebhookWitness) Name() string { return w.name }

// Witness implements Witness.
func (w *WebhookWitness) Witness(ctx context.Context, signed []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(signed))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("POST %s: %w", w.name, ue.Err) // the URL may hold a token
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s", w.name, resp.Status)
	}
	return nil
}
