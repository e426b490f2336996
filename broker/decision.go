package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/txn"
)

// policyKey is the Details key under which every ledger record carries the
// hash of the policy in force (see docs/ledger.md, "Policy versions").
const policyKey = "policy"

// decision is one unit of work: a state change made through svc, its
// ledger records and the revocations it implies, all written through tx and
// committed together, or not at all.
type decision struct {
	s   *Server
	tx  txn.Tx
	svc *approval.Service
}

// commitDecision runs fn in one transaction of Config.Commit, with a
// context that the caller's cancellation does not end: once started, a
// decision is recorded or not made, never half-made. fn's own error is
// returned unchanged and commits nothing; a failure of the store to commit
// is wrapped with errUnrecorded.
func (s *Server) commitDecision(ctx context.Context, fn func(ctx context.Context, d *decision) error) error {
	if s.commit == nil || s.approvals == nil {
		return errNoApprovals
	}
	ctx = context.WithoutCancel(ctx)
	var fnErr error
	err := s.commit.Commit(ctx, func(tx txn.Tx) error {
		fnErr = fn(ctx, &decision{s: s, tx: tx, svc: s.approvals.In(tx)})
		return fnErr
	})
	if err != nil && !errors.Is(err, fnErr) {
		return fmt.Errorf("commit decision: %w: %w", errUnrecorded, err)
	}
	return err
}

// record appends ev, stamped with the policy in force, in the decision's
// transaction. Its errors wrap errLedger.
func (d *decision) record(ev audit.Event) error {
	ev = d.s.withPolicy(ev)
	build, err := d.s.prep.Prepare(ev)
	if err == nil {
		_, err = d.tx.AppendEntry(build)
	}
	if err != nil {
		return fmt.Errorf("record %s: %w: %w", ev.Action, errLedger, err)
	}
	return nil
}

// queue puts the revocation of every live credential in grants, minted
// under id, in the durable queue, in the decision's transaction, and
// returns the plan to attempt once it is committed. Credentials revoked by
// the store's deny-list (Config.DenyListKinds) are also denied in the
// transaction.
func (d *decision) queue(id string, grants []approval.GrantRecord) (revoke.Plan, error) {
	p := d.s.revoker.Plan(id, grants)
	for _, it := range p.Items {
		if err := d.tx.Enqueue(it); err != nil {
			return revoke.Plan{}, fmt.Errorf("queue revocation of %s under %s: %w: %w", it.GrantID, id, errLedger, err)
		}
		if d.s.denyListed[it.Ref.Kind] {
			if err := d.tx.DenyJTI(it.Ref.ID, it.Ref.Expires); err != nil {
				return revoke.Plan{}, fmt.Errorf("deny %s under %s: %w: %w", it.GrantID, id, errLedger, err)
			}
		}
	}
	return p, nil
}

// expired records, in the decision's transaction, the expiry of r, which
// the transaction stored, and queues the revocation of what was minted
// under it.
func (d *decision) expired(ctx context.Context, r approval.Request) (revoke.Plan, error) {
	grants, err := d.svc.Grants(ctx, r.ID)
	if err != nil {
		return revoke.Plan{}, fmt.Errorf("list grants of expired request %s: %w", r.ID, err)
	}
	p, err := d.queue(r.ID, grants)
	if err != nil {
		return revoke.Plan{}, err
	}
	return p, d.record(requestEvent(ActionExpire, string(r.State), "writd", r, "deadline passed", planDetails(p, false)))
}

// planDetails are the ledger details of a decision that revokes: how many
// credentials, and what will happen to them.
func planDetails(p revoke.Plan, again bool) map[string]string {
	details := map[string]string{"credentials": fmt.Sprint(len(p.Receipt.Results))}
	for outcome, n := range p.Receipt.Counts() {
		details[string(outcome)] = fmt.Sprint(n)
	}
	if again {
		details["again"] = "true"
	}
	return details
}

// finishRevocation attempts, after the decision committed, the revocations
// it queued, and records each credential's outcome with the event ev
// returns for it. A revocation that fails stays queued; a record that
// fails is logged (the queue still holds the credential, or it is revoked).
func (s *Server) finishRevocation(ctx context.Context, p revoke.Plan, ev func(revoke.Result) audit.Event) revoke.Receipt {
	receipt := s.revoker.Attempt(context.WithoutCancel(ctx), p)
	for _, res := range receipt.Results {
		e := ev(res)
		e.GrantID, e.CredentialKind, e.CredentialRef, e.Expires = res.GrantID, string(res.Ref.Kind), res.Ref.ID, res.Ref.Expires
		_, _ = s.record(context.WithoutCancel(ctx), e) // logged by record
	}
	return receipt
}

// withPolicy returns ev with the version of the policy in force in its
// details.
func (s *Server) withPolicy(ev audit.Event) audit.Event {
	hash := s.policy.Load().Hash
	if hash == "" {
		return ev
	}
	if _, ok := ev.Details[policyKey]; ok {
		return ev
	}
	d := maps.Clone(ev.Details)
	if d == nil {
		d = map[string]string{}
	}
	d[policyKey] = hash
	ev.Details = d
	return ev
}

// isUnrecorded reports whether err is a failure to record (nothing was
// decided), as opposed to a refusal.
func isUnrecorded(err error) bool {
	return errors.Is(err, errLedger) || errors.Is(err, errUnrecorded)
}
