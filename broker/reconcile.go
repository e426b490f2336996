package broker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
)

// ActionOrphanRevoked is the ledger action of the reconciler: a credential
// was minted (or may have been) for a grant that has no ledger record.
// Outcomes: "revoked" (found and revoked; CredentialRef names it),
// "not_found" (Vault was searched and holds nothing for the grant, and its
// lifetime bound has passed) and "expired" (Vault could not be searched;
// whatever was minted ended at the bound, the entry's Expires).
const ActionOrphanRevoked = "orphan_revoked"

// orphanLeeway is how long past an intent's NotAfter the reconciler waits
// before clearing an intent whose credential it did not find: Vault counts
// a TTL from its own clock and from when it created the credential.
const orphanLeeway = time.Minute

// leaseQuiet is how old a lease intent must be before a periodic pass
// searches for its lease. Leases are matched by issue time (the Vault
// issuer looks from 30s before to 2m after the intent), so a grant that
// starts minting on the same path after the pass took its snapshot could
// otherwise be taken for the orphan. The pass before serving has no such
// grants and searches at once.
const leaseQuiet = 3 * time.Minute

// ReconcileReport counts what one reconciler pass did.
type ReconcileReport struct {
	// Intents is how many intents the pass saw.
	Intents int
	// Recorded intents had their grant in the ledger; they were cleared.
	Recorded int
	// Revoked counts orphan credentials found and revoked.
	Revoked int
	// Cleared counts orphan intents cleared with nothing left to revoke.
	Cleared int
	// Pending counts intents left for a later pass (in flight, Vault
	// unreachable, or not yet past their bound).
	Pending int
}

// ReconcileIntents runs one pass of the reconciler (reliability cases T1
// and T8): for each intent whose pipeline has ended without clearing it,
// it clears the intent if the ledger holds the grant; otherwise it asks
// the issuer to find what was minted, revokes it, records
// ActionOrphanRevoked and clears the intent. Run it before serving and
// then periodically (RunReconciler). Intents of pipelines still running in
// this process are left alone.
func (s *Server) ReconcileIntents(ctx context.Context) (ReconcileReport, error) {
	return s.reconcile(ctx, false)
}

// reconcile is one pass; periodic passes run while grants are served.
func (s *Server) reconcile(ctx context.Context, periodic bool) (ReconcileReport, error) {
	var rep ReconcileReport
	if s.intents == nil {
		return rep, nil
	}
	// In flight before and after the intents are read: a pipeline whose
	// intent was read is in the second snapshot unless it has ended, and
	// one that records after the ledger is read below was in flight in one
	// of them.
	running := s.inflight.snapshot()
	all, err := s.intents.Intents(ctx)
	if err != nil {
		return rep, err
	}
	for id, in := range s.inflight.snapshot() {
		running[id] = in
	}
	rep.Intents = len(all)
	runningPaths := map[string]bool{}
	for _, in := range running {
		runningPaths[in.Recipe.Path] = true
	}
	now := s.now()
	byKind := map[approval.CredentialKind][]approval.Intent{}
	for _, in := range all {
		if _, ok := running[in.GrantID]; ok {
			rep.Pending++
			continue
		}
		if recorded, err := s.grantRecorded(ctx, in.GrantID); err != nil {
			return rep, err
		} else if recorded {
			if err := s.intents.ClearIntent(ctx, in.GrantID); err != nil {
				return rep, err
			}
			rep.Recorded++
			continue
		}
		// A lease is matched by path and issue time, so a pipeline still
		// minting on the same path could be mistaken for the orphan: wait.
		if in.Recipe.Kind == approval.KindVaultSecret && (runningPaths[in.Recipe.Path] || (periodic && now.Sub(in.CreatedAt) < leaseQuiet)) {
			rep.Pending++
			continue
		}
		byKind[in.Recipe.Kind] = append(byKind[in.Recipe.Kind], in)
	}
	var errs []error
	for kind, intents := range byKind {
		if err := s.reconcileKind(ctx, kind, intents, &rep); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// grantRecorded reports whether the ledger holds a credential for grantID.
func (s *Server) grantRecorded(ctx context.Context, grantID string) (bool, error) {
	if s.grants == nil {
		return false, nil
	}
	e, ok, err := s.grants.GrantEntry(ctx, grantID)
	if err != nil {
		return false, err
	}
	return ok && e.CredentialRef != "", nil
}

// reconcileKind searches for and revokes the orphans of one credential kind.
func (s *Server) reconcileKind(ctx context.Context, kind approval.CredentialKind, intents []approval.Intent, rep *ReconcileReport) error {
	issuer := s.issuers[kind]
	finder, _ := issuer.(OrphanFinder)
	var (
		found     map[string][]approval.CredentialRef
		searchErr error
	)
	switch {
	case finder == nil:
		searchErr = errors.New("no issuer that can search for " + string(kind) + " credentials is configured")
	default:
		oldest := intents[0].CreatedAt
		for _, in := range intents {
			if in.CreatedAt.Before(oldest) {
				oldest = in.CreatedAt
			}
		}
		var recorded map[string]bool
		if recorded, searchErr = s.intents.RecordedRefsSince(ctx, oldest.Add(-2*orphanLeeway), orphanLeeway); searchErr == nil {
			found, searchErr = finder.FindOrphans(ctx, intents, func(ref string) bool { return recorded[ref] })
		}
	}
	if searchErr != nil {
		s.log.WarnContext(ctx, "orphan search failed; intents stay until their credentials' lifetime bound",
			slog.String("credential_kind", string(kind)), slog.Int("intents", len(intents)), slog.Any("error", searchErr))
	}
	now := s.now()
	for _, in := range intents {
		refs := found[in.GrantID]
		done := true
		for _, ref := range refs {
			if !s.revokeOrphan(ctx, issuer, in, ref) {
				done = false
				continue
			}
			rep.Revoked++
		}
		switch {
		case !done:
			rep.Pending++
			continue
		case len(refs) > 0:
		case now.Before(in.NotAfter.Add(orphanLeeway)):
			// Nothing found yet, but Vault may still finish a request the
			// broker gave up on (T8): look again until the bound passes.
			rep.Pending++
			continue
		default:
			outcome, reason := "not_found", "no credential found for a grant without a ledger record; its lifetime bound has passed"
			if searchErr != nil {
				outcome, reason = "expired", "could not search for the credential ("+truncate(searchErr.Error(), 256)+"); anything minted expired at its bound"
			}
			if _, err := s.record(context.WithoutCancel(ctx), orphanEvent(in, outcome, approval.CredentialRef{Kind: in.Recipe.Kind, Expires: in.NotAfter}, reason)); err != nil {
				rep.Pending++
				continue
			}
			rep.Cleared++
		}
		if err := s.intents.ClearIntent(ctx, in.GrantID); err != nil {
			return err
		}
	}
	return nil
}

// revokeOrphan revokes ref and records it; it reports success.
func (s *Server) revokeOrphan(ctx context.Context, issuer Issuer, in approval.Intent, ref approval.CredentialRef) bool {
	if !s.revoke(ctx, issuer, ref) {
		return false
	}
	if _, err := s.record(context.WithoutCancel(ctx), orphanEvent(in, "revoked", ref, "minted for a grant that has no ledger record (crash or abandoned request)")); err != nil {
		return false
	}
	s.log.WarnContext(ctx, "orphan credential revoked", slog.String("grant_id", in.GrantID), slog.String("credential_kind", string(ref.Kind)),
		slog.String("credential_ref", ref.ID), slog.String("entitlement", in.Entitlement))
	return true
}

func orphanEvent(in approval.Intent, outcome string, ref approval.CredentialRef, reason string) audit.Event {
	ev := audit.Event{Action: ActionOrphanRevoked, Actor: "writd", Subject: in.Principal.String(), Entitlement: in.Entitlement,
		Outcome: outcome, Reason: reason, GrantID: in.GrantID, CredentialKind: string(ref.Kind), CredentialRef: ref.ID, Expires: ref.Expires,
		Details: map[string]string{"intent_created": in.CreatedAt.UTC().Format(time.RFC3339Nano)}}
	if in.RequestID != "" {
		ev.Details["request_id"] = in.RequestID
	}
	return ev
}

// RunReconciler runs ReconcileIntents every interval until ctx is done.
// Run one pass before serving; this is the background job after it.
func (s *Server) RunReconciler(ctx context.Context, interval time.Duration) {
	if s.intents == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.reconcile(ctx, true); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "reconcile intents", slog.Any("error", err))
		}
	}
}
