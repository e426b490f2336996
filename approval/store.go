package approval

import (
	"context"
	"time"
)

// Filter selects requests in Store.List. Zero fields match everything.
type Filter struct {
	// States, if set, limits the result to these states.
	States []State
	// Requester, Beneficiary and Entitlement, if set, must match exactly.
	Requester   Principal
	Beneficiary Principal
	Entitlement string
	// Limit bounds the number returned (0: no limit), newest first.
	Limit int
}

// Store persists requests and the credentials minted under them. It is
// compare-and-swap shaped so that one bbolt file and several brokers sharing
// etcd give the same guarantees.
type Store interface {
	// CreateRequest stores a new request. It returns ErrConflict if the ID exists.
	CreateRequest(ctx context.Context, r Request) error
	// GetRequest returns the request or ErrNotFound.
	GetRequest(ctx context.Context, id string) (Request, error)
	// UpdateRequest reads the request, calls fn on a copy and, if fn returns
	// nil, stores the copy atomically: no other update to the same request
	// can interleave (the store may call fn again after a conflict, so fn
	// must depend only on its argument). It returns the stored request, or
	// fn's error unchanged, or ErrNotFound.
	UpdateRequest(ctx context.Context, id string, fn func(*Request) error) (Request, error)
	// ListRequests returns the requests matching f, newest first.
	ListRequests(ctx context.Context, f Filter) ([]Request, error)

	// AddGrant records a credential minted under a request.
	AddGrant(ctx context.Context, g GrantRecord) error
	// Grants returns the credentials minted under a request, oldest first.
	Grants(ctx context.Context, requestID string) ([]GrantRecord, error)
	// GrantsFor returns the most recent credentials minted for a beneficiary
	// (at most limit, newest first), for reviewers' context.
	GrantsFor(ctx context.Context, beneficiary Principal, since time.Time, limit int) ([]GrantRecord, error)
}

// BreakGlassFilter selects break-glass uses. Zero fields match everything.
type BreakGlassFilter struct {
	// Open limits the result to uses whose review is still open.
	Open bool
	// Overdue limits the result to open uses whose review is past due at
	// the Service's clock. Stores ignore it; Service.ListBreakGlass applies
	// it (and then Limit).
	Overdue bool
	// Taker, if set, must match exactly.
	Taker Principal
	// Limit bounds the number returned (0: no limit), newest first.
	Limit int
}

// BreakGlassStore persists break-glass uses and their reviews. It is kept
// apart from Store so that a backend adds it on its own; it has the same
// compare-and-swap shape.
type BreakGlassStore interface {
	// CreateBreakGlass stores a new break-glass use. It returns ErrConflict
	// if the ID exists.
	CreateBreakGlass(ctx context.Context, bg BreakGlass) error
	// GetBreakGlass returns the use or ErrNotFound.
	GetBreakGlass(ctx context.Context, id string) (BreakGlass, error)
	// UpdateBreakGlass reads the use, calls fn on a copy and, if fn returns
	// nil, stores the copy atomically with a higher Version: no other update
	// to the same use can interleave (the store may call fn again after a
	// conflict, so fn must depend only on its argument). It returns the
	// stored use, or fn's error unchanged, or ErrNotFound.
	UpdateBreakGlass(ctx context.Context, id string, fn func(*BreakGlass) error) (BreakGlass, error)
	// ListBreakGlass returns the uses matching f's Open, Taker and Limit,
	// newest (by TakenAt, then ID) first. It ignores f.Overdue.
	ListBreakGlass(ctx context.Context, f BreakGlassFilter) ([]BreakGlass, error)
}

// Tx is a Store and a BreakGlassStore bound to one transaction of the
// caller's: everything a Service bound to it (Service.In) writes commits or
// rolls back with whatever else the caller writes in that transaction, such
// as the ledger records of the decision and the revocations it implies.
type Tx interface {
	Store
	BreakGlassStore
}
