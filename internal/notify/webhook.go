package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Webhook posts notifications to a URL from a background worker. It is safe
// for concurrent use. The caller must Close it to flush the queue.
type Webhook struct {
	url         string
	client      *http.Client
	timeout     time.Duration
	maxAttempts int
	baseBackoff time.Duration
	now         func() time.Time
	log         *slog.Logger

	mu     sync.RWMutex // guards closed and the closing of queue
	closed bool
	queue  chan Event

	cancel context.CancelFunc // aborts the worker when Close times out
	done   chan struct{}      // closed when the worker exits

	sent, failed, dropped atomic.Uint64
}

// Stats counts what became of notifications.
type Stats struct {
	// Sent were accepted by the receiver (2xx).
	Sent uint64
	// Failed were refused (non-retryable status) or kept failing for
	// MaxAttempts attempts.
	Failed uint64
	// Dropped were never delivered because the queue was full, the
	// Webhook was closed, or Close's deadline passed first.
	Dropped uint64
}

// payload is the JSON body of a request.
type payload struct {
	Text string `json:"text"`
	Writ Event  `json:"writ"`
}

// New returns a Webhook for cfg and starts its worker. It returns an error
// wrapping ErrInvalidConfig if cfg is unusable. The caller must Close it.
func New(cfg Config) (*Webhook, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new webhook: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Webhook{
		url:         cfg.URL,
		client:      cfg.HTTPClient,
		timeout:     cfg.Timeout,
		maxAttempts: cfg.MaxAttempts,
		baseBackoff: cfg.BaseBackoff,
		now:         cfg.Now,
		log:         cfg.Logger,
		queue:       make(chan Event, cfg.QueueSize),
		cancel:      cancel,
		done:        make(chan struct{}),
	}
	go w.run(ctx)
	return w, nil
}

// Notify queues e for delivery and returns at once; it never blocks on the
// network or on a full queue. If the queue is full, or the Webhook is closed,
// e is dropped: counted in Stats and logged as an error. ctx is used for
// logging only; cancelling it does not cancel the delivery. Notify sets
// e.Time from Config.Now if it is zero.
func (w *Webhook) Notify(ctx context.Context, e Event) {
	if e.Time.IsZero() {
		e.Time = w.now()
	}
	e.Recipients = slices.Clone(e.Recipients)
	e.Fields = maps.Clone(e.Fields)

	queued, closed := w.enqueue(e)
	if queued {
		return
	}
	w.dropped.Add(1)
	cause := "queue full"
	if closed {
		cause = "webhook closed"
	}
	w.log.ErrorContext(ctx, "notification dropped", "cause", cause, "kind", e.Kind, "request_id", e.RequestID)
}

// enqueue puts e on the queue without blocking.
func (w *Webhook) enqueue(e Event) (queued, closed bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return false, true
	}
	select {
	case w.queue <- e:
		return true, false
	default:
		return false, false
	}
}

// Close stops accepting notifications and waits until the queued ones are
// delivered (or have failed) or ctx is done. In the latter case it abandons
// the rest, counts them as dropped and returns an error wrapping
// ErrUndelivered and ctx's error. Close may be called more than once.
func (w *Webhook) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	defer w.cancel()

	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.cancel()
		<-w.done
		return fmt.Errorf("close webhook: %w: %w", ctx.Err(), ErrUndelivered)
	}
}

// Stats returns the counts so far.
func (w *Webhook) Stats() Stats {
	return Stats{Sent: w.sent.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load()}
}

// run delivers queued events one at a time until the queue is closed and
// empty. Once ctx is cancelled, the remaining events are dropped.
func (w *Webhook) run(ctx context.Context) {
	defer close(w.done)
	for e := range w.queue {
		if ctx.Err() != nil {
			w.dropped.Add(1)
			continue
		}
		w.deliver(ctx, e)
	}
}

// deliver posts e, retrying network errors, 5xx and 429 with backoff.
func (w *Webhook) deliver(ctx context.Context, e Event) {
	body, err := json.Marshal(payload{Text: e.Text(), Writ: e})
	if err != nil {
		w.failed.Add(1)
		w.log.ErrorContext(ctx, "notification failed", "kind", e.Kind, "request_id", e.RequestID, "error", err)
		return
	}
	for attempt := 1; ; attempt++ {
		status, err := w.post(ctx, body)
		switch {
		case err == nil && status >= 200 && status < 300:
			w.sent.Add(1)
			return
		case ctx.Err() != nil:
			w.dropped.Add(1)
			w.log.WarnContext(ctx, "notification abandoned at shutdown", "kind", e.Kind, "request_id", e.RequestID)
			return
		case !retryable(status, err) || attempt >= w.maxAttempts:
			w.failed.Add(1)
			w.log.ErrorContext(ctx, "notification failed",
				append([]any{"kind", e.Kind, "request_id", e.RequestID, "attempts", attempt}, outcome(status, err)...)...)
			return
		}
		wait := w.backoff(attempt)
		w.log.DebugContext(ctx, "notification attempt failed",
			append([]any{"kind", e.Kind, "request_id", e.RequestID, "attempt", attempt, "retry_in", wait}, outcome(status, err)...)...)
		if !sleep(ctx, wait) {
			w.dropped.Add(1)
			w.log.WarnContext(ctx, "notification abandoned at shutdown", "kind", e.Kind, "request_id", e.RequestID)
			return
		}
	}
}

// post sends one attempt and returns the response status.
func (w *Webhook) post(ctx context.Context, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("build webhook request") // the cause would repeat the URL
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "writ-notify")
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, redact(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	return resp.StatusCode, nil
}

// outcome returns the log attributes of a failed attempt: the error if
// there was one, else the status.
func outcome(status int, err error) []any {
	if err != nil {
		return []any{"error", err}
	}
	return []any{"status", status}
}

// retryable reports whether an attempt that ended with status or err may
// succeed later: network errors, 5xx, and 429 (rate limited). Other 4xx and
// 3xx (redirects are not followed) are permanent.
func retryable(status int, err error) bool {
	return err != nil || status >= 500 || status == http.StatusTooManyRequests
}

// backoff returns the wait after the given failed attempt: BaseBackoff
// doubled per attempt, capped at maxBackoff, of which a random half is
// jitter.
func (w *Webhook) backoff(attempt int) time.Duration {
	d := w.baseBackoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// sleep waits for d or until ctx is done, and reports whether it waited the
// whole d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// redact strips the URL, which may embed a credential, from a client error.
func redact(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Errorf("%s webhook: %w", ue.Op, ue.Err)
	}
	return err
}
