package revoke

import (
	"context"
	"time"

	"github.com/writ-dev/writ/approval"
)

// Issuer ends credentials of one kind. Revoking an already-ended or
// unknown credential succeeds, so a revocation may safely be repeated.
// Revoke must return when ctx is done.
type Issuer interface {
	Revoke(ctx context.Context, ref approval.CredentialRef) error
}

// Queue is the durable store of revocations still to do. Implementations
// must be safe for concurrent use; boltstore.Store is one.
type Queue interface {
	// Enqueue stores it. If an item with it.ID is already queued, Enqueue
	// leaves that one as it is and returns nil.
	Enqueue(ctx context.Context, it Item) error
	// Due claims and returns up to limit items whose NextAt is at or
	// before now, earliest NextAt first. In the same atomic write it sets
	// each returned item's NextAt to now+lease, so no other Due returns it
	// again before the lease runs out; the caller then calls Done or
	// Reschedule. The returned items carry the new NextAt.
	Due(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Item, error)
	// Reschedule records a failed attempt: the item's Attempts, NextAt and
	// LastError become the given values. Rescheduling an item that is no
	// longer queued does nothing and returns nil.
	Reschedule(ctx context.Context, id string, attempts int, next time.Time, lastErr string) error
	// Done removes the item. Removing an item that is not queued returns nil.
	Done(ctx context.Context, id string) error
	// Pending returns how many items are queued, due or not.
	Pending(ctx context.Context) (int, error)
}

// Item is one credential still to revoke.
type Item struct {
	// ID is ItemID(Ref).
	ID string
	// Ref is the credential.
	Ref approval.CredentialRef
	// RequestID and GrantID say what the credential was minted under.
	RequestID, GrantID string
	// Attempts is how many attempts have failed.
	Attempts int
	// NextAt is when the item is next due (or when its claim runs out).
	NextAt time.Time
	// EnqueuedAt is when the item was first queued.
	EnqueuedAt time.Time
	// LastError is the last attempt's error text.
	LastError string
}

// ItemID returns the queue ID of the credential ref: its kind and ID.
func ItemID(ref approval.CredentialRef) string {
	return string(ref.Kind) + ":" + ref.ID
}
