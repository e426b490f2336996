package audit

import "context"

// Scanner reads the stored ledger. Verify needs only this.
type Scanner interface {
	// ScanRecords calls fn for each stored record in key order with the key's
	// sequence number and the raw stored bytes (so Verify can check what is
	// actually on disk). fn may keep raw. ScanRecords stops at, and returns,
	// the first error from fn or from ctx.
	ScanRecords(ctx context.Context, fn func(seq uint64, raw []byte) error) error
}

// Store is where a Log keeps its entries. It is shaped so that a single-node
// store (bbolt, one write transaction) and a replicated one (etcd,
// compare-and-swap on the head key) can both implement it.
type Store interface {
	// AppendEntry runs build with the current head (ok=false when the ledger is empty)
	// and durably stores the entry it returns as the next record, atomically: no other
	// append can interleave. It returns only after the record is durable (fsynced).
	// build may be called more than once (retries); it must be pure.
	//
	// AppendEntry returns build's error, or ErrNotNext if the entry fails
	// CheckNext against the head, and stores nothing in either case.
	AppendEntry(ctx context.Context, build func(head Entry, ok bool) (Entry, error)) (Entry, error)

	Scanner
}

// HeadReader is implemented by stores that can read the last entry without
// scanning the ledger. Log.Head uses it when available.
type HeadReader interface {
	// Head returns the last stored entry, or ok=false if the ledger is empty.
	Head(ctx context.Context) (head Entry, ok bool, err error)
}
