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
