package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Log.
type Config struct {
	// Store keeps the entries. Required.
	Store Store
	// Now is the clock that stamps entries. Defaults to time.Now.
	Now func() time.Time
	// Logger receives a debug line per appended entry (sequence, action and
	// grant ID only; never Details). Defaults to discarding.
	Logger *slog.Logger
}

// Log appends events to a hash-chained ledger. It is safe for concurrent use:
// the Store serialises appends.
type Log struct {
	store  Store
	now    func() time.Time
	logger *slog.Logger
}

// New returns a Log over cfg.Store. It returns an error if cfg.Store is nil.
func New(cfg Config) (*Log, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: Store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Log{store: cfg.Store, now: cfg.Now, logger: cfg.Logger}, nil
}

// Build links an entry to the ledger's head (ok is false for an empty
// ledger) and returns the entry to store next. It is the build argument of
// Store.AppendEntry; Log.Prepare makes one.
type Build func(head Entry, ok bool) (Entry, error)

// Append records ev as the next entry: Seq is the head's Seq+1, PrevHash the
// head's Hash and Time the clock's reading (in UTC) when Append was called,
// so under concurrent appends Time need not increase with Seq. It returns the
// stored entry once it is durable.
//
// Append returns ErrInvalid if ev has no Action or a string that is not valid
// UTF-8, and otherwise any error from the Store. On error nothing was
// recorded, and the caller must treat the action as unaudited (fail closed).
func (l *Log) Append(ctx context.Context, ev Event) (Entry, error) {
	build, err := l.Prepare(ev)
	if err != nil {
		return Entry{}, err
	}
	e, err := l.store.AppendEntry(ctx, build)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: append %s: %w", ev.Action, err)
	}
	l.logger.DebugContext(ctx, "audit entry appended",
		"seq", e.Seq, "action", e.Action, "grant_id", e.GrantID)
	return e, nil
}

// Prepare checks and normalizes ev as Append does, stamps it with the clock's
// reading now, and returns the Build that links it to whatever head it is
// given. It is for a caller that writes the entry inside its own store
// transaction, together with the decision the entry records (see the
// package documentation, "Decisions and their records"); the Build is pure
// and may be called again if that transaction is retried.
//
// Prepare returns ErrInvalid if ev has no Action or a string that is not
// valid UTF-8.
func (l *Log) Prepare(ev Event) (Build, error) {
	if ev.Action == "" {
		return nil, fmt.Errorf("audit: append: empty action: %w", ErrInvalid)
	}
	ev = normalize(ev)
	now := l.now().UTC()
	if err := validateFields(Entry{Time: now, Event: ev}); err != nil {
		return nil, fmt.Errorf("audit: append %s: %w", ev.Action, err)
	}
	return func(head Entry, ok bool) (Entry, error) {
		next := Entry{Seq: 1, Time: now, Event: ev, PrevHash: ZeroHash}
		if ok {
			next.Seq, next.PrevHash = head.Seq+1, head.Hash
		}
		next.Hash = next.ComputeHash()
		return next, nil
	}, nil
}

// Head returns the last entry, or ok=false if the ledger is empty. It is
// cheap when the Store implements HeadReader; otherwise it scans the ledger.
// Recording Head().Hash somewhere the ledger's host cannot rewrite is what
// makes truncation detectable (see the package documentation).
func (l *Log) Head(ctx context.Context) (Entry, bool, error) {
	if hr, ok := l.store.(HeadReader); ok {
		e, ok, err := hr.Head(ctx)
		if err != nil {
			return Entry{}, false, fmt.Errorf("audit: head: %w", err)
		}
		return e, ok, nil
	}
	var last []byte
	err := l.store.ScanRecords(ctx, func(_ uint64, raw []byte) error {
		last = raw
		return nil
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("audit: head: %w", err)
	}
	if last == nil {
		return Entry{}, false, nil
	}
	e, err := Decode(last)
	if err != nil {
		return Entry{}, false, fmt.Errorf("audit: head: %w", err)
	}
	return e, true, nil
}

// Search returns the entries for which match reports true, oldest first,
// keeping at most the last limit (0: all). It reads the whole ledger, so it
// is for operators' questions ("what happened to this grant?"), not for the
// request path.
func (l *Log) Search(ctx context.Context, match func(Entry) bool, limit int) ([]Entry, error) {
	var out []Entry
	err := l.store.ScanRecords(ctx, func(_ uint64, raw []byte) error {
		e, err := Decode(raw)
		if err != nil {
			return err
		}
		if match(e) {
			out = append(out, e)
			if limit > 0 && len(out) > limit {
				out = out[1:]
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("search ledger: %w", err)
	}
	return out, nil
}
