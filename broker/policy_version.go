package broker

import (
	"context"
	"errors"
	"log/slog"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/txn"
)

// ActionPolicyLoaded is the ledger action that records a policy version:
// Details "policy" is its hash, "text" the policy file as loaded, "source"
// where it was loaded from and "previous" the hash of the version recorded
// before it ("" for the first).
const ActionPolicyLoaded = "policy_loaded"

// RecordPolicy records the policy in force in the ledger, with its full
// text, unless it is the version recorded last, and reports whether it
// wrote a record. Call it at start, before serving: every later record
// carries the policy's hash, and this record lets an auditor holding only
// the ledger read and replay the rules behind each decision. The record and
// the store's note of the last recorded version commit together. A policy
// without a Hash (built in code) is not recorded.
func (s *Server) RecordPolicy(ctx context.Context) (bool, error) {
	p := s.policy.Load()
	if p.Hash == "" {
		return false, nil
	}
	if s.commit == nil || s.prep == nil {
		return false, errors.New("broker: RecordPolicy needs Config.Commit and a Ledger that is a LedgerPreparer")
	}
	var recorded bool
	err := s.commit.Commit(context.WithoutCancel(ctx), func(tx txn.Tx) error {
		recorded = false
		prev, err := tx.PolicyVersion()
		if err != nil || prev == p.Hash {
			return err
		}
		d := &decision{s: s, tx: tx}
		ev := audit.Event{Action: ActionPolicyLoaded, Actor: "writd", Outcome: "loaded",
			Details: map[string]string{policyKey: p.Hash, "previous": prev, "source": p.Source, "text": string(p.Text)}}
		if err := d.record(ev); err != nil {
			return err
		}
		recorded = true
		return tx.SetPolicyVersion(p.Hash)
	})
	if err != nil {
		return false, err
	}
	if recorded {
		s.log.InfoContext(ctx, "policy version recorded", slog.String("policy", p.Hash), slog.String("source", p.Source))
	}
	return recorded, nil
}
