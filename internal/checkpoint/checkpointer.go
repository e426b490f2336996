// Package checkpoint publishes the ledger's Merkle tree: a Checkpointer
// signs checkpoints (audit.Checkpoint, as signed notes) in the background,
// stores them, and hands each to the configured witnesses; Handler serves
// the latest checkpoint, the verifier key and proofs on the public HTTP
// listener. Nothing here runs on the grant's path: appends only wake the
// Checkpointer. See docs/ledger.md.
package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/writ-dev/writ/internal/audit"
)

// Defaults for Config.
const (
	DefaultEveryRecords = 1000
	DefaultEvery        = time.Minute
)

// Store is where checkpoints come from and go: the ledger's stored tree and
// the checkpoints bucket (boltstore.Store implements it).
type Store interface {
	audit.TreeReader
	// PutCheckpoint stores a signed checkpoint for tree size size.
	PutCheckpoint(ctx context.Context, size int64, signed []byte) error
	// LatestCheckpoint returns the stored checkpoint with the largest size.
	LatestCheckpoint(ctx context.Context) (size int64, signed []byte, ok bool, err error)
}

// Config configures a Checkpointer.
type Config struct {
	// Store holds the tree and the checkpoints. Required.
	Store Store
	// Signer signs checkpoints; its name is the log's origin. Required.
	Signer note.Signer
	// EveryRecords: a checkpoint is signed once the tree has grown by this
	// many records since the last one. Default DefaultEveryRecords.
	EveryRecords int64
	// Every: a checkpoint is signed when this long has passed since the
	// last one and the tree has grown. Default DefaultEvery.
	Every time.Duration
	// Witnesses receive every new checkpoint, in the background.
	Witnesses []Witness
	// Metrics records witness failures; nil records nothing.
	Metrics *Metrics
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// After waits for a retry's backoff. Default time.After; tests make it
	// return at once.
	After func(time.Duration) <-chan time.Time
	// Logger receives checkpoint and witness events. Default discards.
	Logger *slog.Logger
}

// Checkpointer signs and publishes checkpoints. Run it in a goroutine, wake
// it with Notify after appends, and Close it at shutdown (after the last
// append, before the store closes).
type Checkpointer struct {
	cfg  Config
	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex // serialises signing; guards the fields below
	lastSize int64
	lastAt   time.Time
	latest   []byte

	workers []*worker
	wctx    context.Context
	wcancel context.CancelFunc
	wg      sync.WaitGroup
	running bool
	closed  bool
}

// New returns a Checkpointer that continues from the newest stored
// checkpoint. It starts the witness workers; Close stops them.
func New(ctx context.Context, cfg Config) (*Checkpointer, error) {
	if cfg.Store == nil || cfg.Signer == nil {
		return nil, errors.New("checkpoint: Store and Signer are required")
	}
	if cfg.EveryRecords <= 0 {
		cfg.EveryRecords = DefaultEveryRecords
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Checkpointer{cfg: cfg, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	size, signed, ok, err := cfg.Store.LatestCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if ok {
		c.lastSize, c.latest = size, signed
	}
	c.lastAt = cfg.Now()
	c.wctx, c.wcancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, w := range cfg.Witnesses {
		wk := newWorker(w, c)
		c.workers = append(c.workers, wk)
		c.wg.Add(1)
		go func() { defer c.wg.Done(); wk.run(c.wctx) }()
	}
	return c, nil
}

// Notify wakes the Checkpointer after an append. It never blocks.
func (c *Checkpointer) Notify(uint64) {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Latest returns the newest signed checkpoint note, or nil if none.
func (c *Checkpointer) Latest() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest
}

// Run signs checkpoints until Close: at start if the tree has grown since
// the last stored checkpoint (a restart, a migrated ledger), then whenever
// woken or every Every/4 if MaybeSign says so. Errors are logged and retried
// at the next wake-up; they never reach the grant path.
func (c *Checkpointer) Run() {
	c.mu.Lock()
	if c.running || c.closed {
		c.mu.Unlock()
		return
	}
	c.running = true
	c.mu.Unlock()
	defer close(c.done)
	ctx := c.wctx
	if _, err := c.sign(ctx, true); err != nil {
		c.cfg.Logger.Error("ledger checkpoint failed", "error", err)
	}
	t := time.NewTicker(max(c.cfg.Every/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-t.C:
		}
		if _, err := c.MaybeSign(ctx); err != nil {
			c.cfg.Logger.Error("ledger checkpoint failed", "error", err)
		}
	}
}

// MaybeSign signs a checkpoint if the tree has grown by EveryRecords since
// the last one, or has grown at all and Every has passed (by the injected
// clock). It reports whether it signed.
func (c *Checkpointer) MaybeSign(ctx context.Context) (bool, error) { return c.sign(ctx, false) }

// SignNow signs a checkpoint if the tree has grown since the last one,
// whatever the thresholds (Close does this at shutdown).
func (c *Checkpointer) SignNow(ctx context.Context) (bool, error) { return c.sign(ctx, true) }

func (c *Checkpointer) sign(ctx context.Context, force bool) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	size, err := c.cfg.Store.TreeSize(ctx)
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	now := c.cfg.Now()
	grown := size - c.lastSize
	if grown <= 0 || (!force && grown < c.cfg.EveryRecords && now.Sub(c.lastAt) < c.cfg.Every) {
		return false, nil
	}
	root, err := audit.TreeHash(ctx, c.cfg.Store, size)
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	signed, err := audit.SignCheckpoint(audit.Checkpoint{Origin: c.cfg.Signer.Name(), Size: size, Hash: root}, c.cfg.Signer)
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	if err := c.cfg.Store.PutCheckpoint(ctx, size, signed); err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	c.lastSize, c.lastAt, c.latest = size, now, signed
	c.cfg.Logger.Info("ledger checkpoint signed", "size", size)
	for _, w := range c.workers {
		w.enqueue(signed)
	}
	return true, nil
}

// Close stops Run, signs a last checkpoint if the tree grew, and waits until
// ctx is done for the witnesses to receive what is pending.
func (c *Checkpointer) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	running := c.running
	c.mu.Unlock()
	close(c.stop)
	if running {
		<-c.done
	}
	_, err := c.SignNow(ctx)
	for _, w := range c.workers {
		w.closeQueue()
	}
	drained := make(chan struct{})
	go func() { c.wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		c.wcancel()
		<-drained
	}
	c.wcancel()
	return err
}
