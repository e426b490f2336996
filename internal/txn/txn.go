// Package txn declares the unit of work that makes a decision, its ledger
// records and the work it implies one transaction: a request stored as
// revoked together with its revoke_approval record and a revocation queue
// entry for every live credential under it, or none of these.
//
// The broker uses it; stores implement it (internal/store/boltstore with one
// bbolt write transaction; an etcd backend would use one Txn). It holds
// only interfaces, so that both sides can name the same types.
package txn

import (
	"context"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/revoke"
)

// Committer runs units of work.
type Committer interface {
	// Commit runs fn in one transaction and commits everything fn wrote
	// through tx if fn returns nil, atomically and durably (fsynced), or
	// nothing if fn returns an error, which Commit then returns unchanged
	// (wrapped errors of the store itself are returned wrapped). fn must
	// not keep tx, or anything read through it, after it returns. fn may be
	// called more than once (a store that retries a conflicting
	// transaction), so it must start afresh on each call.
	Commit(ctx context.Context, fn func(tx Tx) error) error
}

// Tx is one transaction of the store behind the approval service, the
// ledger and the revocation queue. Reads see the transaction's own writes.
// Its approval.Store and approval.BreakGlassStore methods behave as
// documented there, inside the transaction: an update whose function fails
// writes nothing, and the rest of the transaction goes on.
type Tx interface {
	approval.Store
	approval.BreakGlassStore

	// AppendEntry appends the entry build returns for the current head
	// (see audit.Store.AppendEntry), as part of the transaction.
	AppendEntry(build audit.Build) (audit.Entry, error)
	// Enqueue puts it in the durable revocation queue (revoke.Queue's
	// Enqueue: an item already queued is left as it is).
	Enqueue(it revoke.Item) error
	// DenyJTI puts a JWT ID on the store's deny-list until exp, the way
	// Writ's JWT issuers revoke (a jti denied again keeps the later exp).
	DenyJTI(jti string, exp time.Time) error
	// PolicyVersion returns the hash of the policy version last recorded
	// in the ledger, or "" if none was.
	PolicyVersion() (string, error)
	// SetPolicyVersion records hash as the policy version last recorded.
	SetPolicyVersion(hash string) error
}
