package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/txn"
)

var (
	_ txn.Committer = (*Store)(nil)
	_ txn.Tx        = (*tx)(nil)
)

// policyVersionKey holds, in the meta bucket, the hash of the policy
// version last recorded in the ledger.
var policyVersionKey = []byte("policy_version")

// Commit implements txn.Committer with one bbolt write transaction (db.Update,
// not a group commit: decisions are rare, and fn then runs exactly once).
// Everything fn writes through its tx, ledger records included, is fsynced
// together when fn returns nil, and nothing is written when it returns an
// error, which Commit returns unchanged.
func (s *Store) Commit(ctx context.Context, fn func(txn.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	var fnErr error
	err := s.db.Update(func(btx *bolt.Tx) error {
		t := &tx{s: s, tx: btx}
		fnErr = fn(t)
		t.tx = nil // fn must not keep it
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// tx is one Commit's transaction.
type tx struct {
	s  *Store
	tx *bolt.Tx
}

func (t *tx) CreateRequest(ctx context.Context, r approval.Request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return requests.createIn(t.tx, r)
}

func (t *tx) GetRequest(ctx context.Context, id string) (approval.Request, error) {
	if err := ctx.Err(); err != nil {
		return approval.Request{}, err
	}
	r, err := getRequest(t.tx.Bucket(requestsBucket), id)
	if err != nil {
		return approval.Request{}, fmt.Errorf("get request %s: %w", id, err)
	}
	return r, nil
}

func (t *tx) UpdateRequest(ctx context.Context, id string, fn func(*approval.Request) error) (approval.Request, error) {
	if err := ctx.Err(); err != nil {
		return approval.Request{}, err
	}
	out, fnErr, err := requests.updateIn(t.tx, id, fn)
	if fnErr != nil {
		return approval.Request{}, fnErr
	}
	if err != nil {
		return approval.Request{}, fmt.Errorf("update request %s: %w", id, err)
	}
	return out, nil
}

func (t *tx) ListRequests(ctx context.Context, f approval.Filter) ([]approval.Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return listRequestsIn(t.tx, f)
}

func (t *tx) AddGrant(ctx context.Context, g approval.GrantRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if g.GrantID == "" || g.RequestID == "" || strings.Contains(g.GrantID, "/") {
		return fmt.Errorf("add grant %q to request %q: grant id must be non-empty without '/', request id non-empty: %w", g.GrantID, g.RequestID, approval.ErrInvalid)
	}
	if err := addGrantIn(t.tx, g); err != nil {
		return fmt.Errorf("add grant %s to request %s: %w", g.GrantID, g.RequestID, err)
	}
	return nil
}

func (t *tx) Grants(ctx context.Context, requestID string) ([]approval.GrantRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out, err := grantsIn(t.tx, requestID)
	if err != nil {
		return nil, fmt.Errorf("list grants of %s: %w", requestID, err)
	}
	return out, nil
}

func (t *tx) GrantsFor(ctx context.Context, beneficiary approval.Principal, since time.Time, limit int) ([]approval.GrantRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return grantsForIn(t.tx, beneficiary, since, limit)
}

func (t *tx) CreateBreakGlass(ctx context.Context, bg approval.BreakGlass) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return breakGlasses.createIn(t.tx, bg)
}

func (t *tx) GetBreakGlass(ctx context.Context, id string) (approval.BreakGlass, error) {
	if err := ctx.Err(); err != nil {
		return approval.BreakGlass{}, err
	}
	bg, err := breakGlasses.getIn(t.tx.Bucket(breakGlassBucket), id)
	if err != nil {
		return approval.BreakGlass{}, fmt.Errorf("get break-glass %s: %w", id, err)
	}
	return bg, nil
}

func (t *tx) UpdateBreakGlass(ctx context.Context, id string, fn func(*approval.BreakGlass) error) (approval.BreakGlass, error) {
	if err := ctx.Err(); err != nil {
		return approval.BreakGlass{}, err
	}
	out, fnErr, err := breakGlasses.updateIn(t.tx, id, fn)
	if fnErr != nil {
		return approval.BreakGlass{}, fnErr
	}
	if err != nil {
		return approval.BreakGlass{}, fmt.Errorf("update break-glass %s: %w", id, err)
	}
	return out, nil
}

func (t *tx) ListBreakGlass(ctx context.Context, f approval.BreakGlassFilter) ([]approval.BreakGlass, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return listBreakGlassIn(t.tx, f)
}

// AppendEntry implements txn.Tx through appendInTx, the one ledger write
// path.
func (t *tx) AppendEntry(build audit.Build) (audit.Entry, error) {
	e, err := t.s.appendInTx(t.tx, build)
	if err != nil {
		return audit.Entry{}, fmt.Errorf("append ledger entry: %w", err)
	}
	return e, nil
}

// Enqueue implements txn.Tx: RevocationQueue.Enqueue inside the transaction.
func (t *tx) Enqueue(it revoke.Item) error {
	if err := enqueueIn(t.tx, it); err != nil {
		return fmt.Errorf("enqueue revocation %s: %w", it.ID, err)
	}
	return nil
}

// DenyJTI implements txn.Tx: Store.DenyJTI inside the transaction.
func (t *tx) DenyJTI(jti string, exp time.Time) error {
	if err := denyIn(t.tx, jti, exp); err != nil {
		return fmt.Errorf("deny jti %s: %w", jti, err)
	}
	return nil
}

// PolicyVersion implements txn.Tx: meta/policy_version.
func (t *tx) PolicyVersion() (string, error) {
	b, err := writeBucket(t.tx, metaBucket)
	if err != nil {
		return "", err
	}
	return string(bytes.Clone(b.Get(policyVersionKey))), nil
}

// SetPolicyVersion implements txn.Tx.
func (t *tx) SetPolicyVersion(hash string) error {
	b, err := writeBucket(t.tx, metaBucket)
	if err != nil {
		return err
	}
	if err := b.Put(policyVersionKey, []byte(hash)); err != nil {
		return fmt.Errorf("put policy version: %w", err)
	}
	return nil
}
