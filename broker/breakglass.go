package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/notify"
	"github.com/writ-dev/writ/internal/revoke"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Ledger actions for break-glass.
const (
	ActionBreakGlass              = "break_glass"
	ActionBreakGlassRefused       = "break_glass_refused"
	ActionBreakGlassReview        = "break_glass_review"
	ActionBreakGlassReviewRefused = "break_glass_review_refused"
	ActionBreakGlassClosed        = "break_glass_closed"
	ActionBreakGlassOverdue       = "break_glass_overdue"
)

// BreakGlass takes break-glass access for the calling workload.
func (s *Server) BreakGlass(ctx context.Context, req *brokerv1.BreakGlassRequest) (*brokerv1.BreakGlassResponse, error) {
	id, ok := workloadFrom(ctx)
	if !ok {
		return nil, s.toStatus(ctx, fmt.Errorf("BreakGlass is for workloads: %w", errNotWorkload))
	}
	p := approval.Principal(id.String())
	cred, bg, err := s.breakGlass(ctx, approval.BreakGlassInput{
		Taker: p, Beneficiary: p, Entitlement: req.GetEntitlement(),
		Reason: req.GetReason(), Incident: req.GetIncident(), TTL: req.GetTtl().AsDuration(),
	})
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &brokerv1.BreakGlassResponse{Credential: credentialToProto(cred, bg.GrantID, bg.Entitlement, true), ReviewId: bg.ID, ReviewDue: ts(bg.ReviewDue)}, nil
}

// breakGlass is the break-glass pipeline: decide (with the overdue block),
// issue, then store the use with its credential and its ledger record in
// one transaction (if that fails, the credential is revoked and nothing is
// stored), alert. Refusals are recorded too; a use whose issuance failed is
// recorded ("error") but not stored, so it leaves no review obligation.
func (s *Server) breakGlass(ctx context.Context, in approval.BreakGlassInput) (approval.Credential, approval.BreakGlass, error) {
	if s.approvals == nil {
		return approval.Credential{}, approval.BreakGlass{}, errNoApprovals
	}
	refuse := func(err error) (approval.Credential, approval.BreakGlass, error) {
		ev := audit.Event{Action: ActionBreakGlassRefused, Actor: in.Taker.String(), Subject: in.Beneficiary.String(),
			Entitlement: truncate(in.Entitlement, 64), Outcome: outcomeOf(err), Reason: reasonOf(err), TTL: in.TTL,
			Details: map[string]string{"incident": truncate(in.Incident, 256), "reason_given": truncate(in.Reason, 256)}}
		if _, lerr := s.record(context.WithoutCancel(ctx), ev); lerr != nil {
			return approval.Credential{}, approval.BreakGlass{}, fmt.Errorf("record refusal (%v): %w: %w", err, errLedger, lerr)
		}
		return approval.Credential{}, approval.BreakGlass{}, err
	}
	if !entitlementName.MatchString(in.Entitlement) {
		return refuse(fmt.Errorf("entitlement name %q is not a valid name: %w", truncate(in.Entitlement, 64), errBadRequest))
	}
	in.ID = "bg_" + NewGrantID()[2:]
	bg, g, err := s.approvals.PrepareBreakGlass(ctx, in, s.newID())
	if err != nil {
		return refuse(err)
	}
	issuer := s.issuers[g.Recipe.Kind]
	if issuer == nil {
		return refuse(fmt.Errorf("entitlement %q: credential kind %q: %w", g.Entitlement, g.Recipe.Kind, errNoIssuer))
	}
	m, err := s.beginMint(ctx, issuer, g)
	if err != nil {
		return approval.Credential{}, bg, err
	}
	defer m.end()
	cred, err := issuer.Issue(ctx, g)
	if err == nil && m.crashed(g) {
		return approval.Credential{}, bg, errCrashed
	}
	if err != nil {
		err = fmt.Errorf("issue break-glass %s credential for %s: %w: %w", g.Recipe.Kind, bg.ID, errIssuer, err)
		s.record(context.WithoutCancel(ctx), bgEvent(ActionBreakGlass, "error", bg, g, approval.Credential{}, reasonOf(err)))
		return approval.Credential{}, bg, err
	}
	if cred.Ref.Expires.After(g.Expires) {
		if s.revoke(ctx, issuer, cred.Ref) {
			m.settle(ctx)
		}
		return approval.Credential{}, bg, fmt.Errorf("issuer returned a credential past the break-glass cap: %w", errIssuer)
	}
	// The use, with its credential, and its record commit together: no
	// credential without its review obligation, no use without its record.
	bg.GrantID, bg.Credential = g.ID, cred.Ref
	granted := bgEvent(ActionBreakGlass, "granted", bg, g, cred, bg.Reason)
	granted.Details[notAfterKey] = g.NotAfter.UTC().Format(time.RFC3339Nano)
	err = s.commitDecision(ctx, func(ctx context.Context, d *decision) error {
		if err := d.svc.StoreBreakGlass(ctx, bg); err != nil {
			return err
		}
		return d.record(granted)
	})
	if err != nil {
		if s.revoke(ctx, issuer, cred.Ref) {
			m.settle(ctx)
		}
		if !isUnrecorded(err) {
			err = fmt.Errorf("%w: %w", errLedger, err)
		}
		return approval.Credential{}, bg, fmt.Errorf("record break-glass %s: %w", bg.ID, err)
	}
	m.settle(ctx)
	var skipped, reviewers []string
	if e, err := s.policy.Load().Lookup(bg.Entitlement); err == nil {
		skipped = stageGroups(e)
		if e.BreakGlass != nil {
			reviewers = e.BreakGlass.ReviewerGroups
		}
	}
	recipients := append(append([]string{}, reviewers...), skipped...)
	s.notifier.Notify(ctx, notify.Event{
		Kind: notify.KindBreakGlassTaken, RequestID: bg.ID, Entitlement: bg.Entitlement, Beneficiary: bg.Beneficiary.String(),
		Actor: bg.Taker.String(), Reason: bg.Reason, Until: cred.Ref.Expires, Recipients: recipients,
		Fields: map[string]string{"incident": bg.Incident, "skipped_approvers": strings.Join(skipped, ","),
			"reviewers": strings.Join(reviewers, ","), "review_due": bg.ReviewDue.Format(time.RFC3339)},
	})
	s.log.WarnContext(ctx, "break-glass taken", slog.String("break_glass_id", bg.ID), slog.String("taker", bg.Taker.String()),
		slog.String("entitlement", bg.Entitlement), slog.String("credential_ref", cred.Ref.ID), slog.Time("review_due", bg.ReviewDue))
	return cred, bg, nil
}

func bgEvent(action, outcome string, bg approval.BreakGlass, g approval.Grant, c approval.Credential, reason string) audit.Event {
	return audit.Event{
		Action: action, Actor: bg.Taker.String(), Subject: bg.Beneficiary.String(), Entitlement: bg.Entitlement,
		Rule: g.Rule, Outcome: outcome, Reason: truncate(reason, 1024), GrantID: g.ID, TTL: g.TTL,
		CredentialKind: string(c.Ref.Kind), CredentialRef: c.Ref.ID, Expires: c.Ref.Expires,
		Details: map[string]string{"break_glass": "true", "break_glass_id": bg.ID, "incident": bg.Incident, "review_due": bg.ReviewDue.Format(time.RFC3339)},
	}
}

// TakeBreakGlass takes break-glass access as a person.
func (s *Server) TakeBreakGlass(ctx context.Context, req *adminv1.TakeBreakGlassRequest) (*adminv1.TakeBreakGlassResponse, error) {
	person, err := personFrom(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	beneficiary := person.Principal
	if req.GetBeneficiary() != "" {
		if beneficiary, err = approval.ParseWorkload(req.GetBeneficiary()); err != nil {
			return nil, s.toStatus(ctx, fmt.Errorf("--for: %w", err))
		}
	}
	cred, bg, err := s.breakGlass(ctx, approval.BreakGlassInput{
		Taker: person.Principal, TakerGroups: person.Groups, Beneficiary: beneficiary, Entitlement: req.GetEntitlement(),
		Reason: req.GetReason(), Incident: req.GetIncident(), TTL: req.GetTtl().AsDuration(),
	})
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &adminv1.TakeBreakGlassResponse{Credential: credentialToProto(cred, bg.GrantID, bg.Entitlement, true), Record: s.bgToProto(bg)}, nil
}

// ListBreakGlass lists the break-glass uses the caller may see.
func (s *Server) ListBreakGlass(ctx context.Context, req *adminv1.ListBreakGlassRequest) (*adminv1.ListBreakGlassResponse, error) {
	c, err := authorized(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if s.approvals == nil {
		return nil, s.toStatus(ctx, errNoApprovals)
	}
	f := approval.BreakGlassFilter{Open: req.GetOpen(), Overdue: req.GetOverdue(), Limit: 100}
	if n := int(req.GetPageSize()); n > 0 {
		f.Limit = min(n, 1000)
	}
	list, err := s.listVisibleBreakGlass(ctx, c, f)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &adminv1.ListBreakGlassResponse{}
	for _, bg := range list {
		resp.Records = append(resp.Records, s.bgToProto(bg))
	}
	return resp, nil
}

// GetBreakGlass returns one use with the ledger's evidence.
func (s *Server) GetBreakGlass(ctx context.Context, req *adminv1.GetBreakGlassRequest) (*adminv1.GetBreakGlassResponse, error) {
	c, err := authorized(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if s.approvals == nil {
		return nil, s.toStatus(ctx, errNoApprovals)
	}
	bg, err := s.approvals.GetBreakGlass(ctx, req.GetId())
	switch {
	case errors.Is(err, approval.ErrNotFound), err == nil && !s.maySeeBreakGlass(c, bg):
		return nil, s.toStatus(ctx, notVisible("break-glass use", req.GetId()))
	case err != nil:
		return nil, s.toStatus(ctx, err)
	}
	resp := &adminv1.GetBreakGlassResponse{Record: s.bgToProto(bg)}
	if resp.Ledger, err = s.ledgerEvidence(ctx, bg.ID, bg.GrantID, 200); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return resp, nil
}

// ReviewBreakGlass records a reviewer's verdict; "unjustified" revokes what
// is still live.
func (s *Server) ReviewBreakGlass(ctx context.Context, req *adminv1.ReviewBreakGlassRequest) (*adminv1.ReviewBreakGlassResponse, error) {
	person, err := personFrom(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if s.approvals == nil {
		return nil, s.toStatus(ctx, errNoApprovals)
	}
	rev := approval.BreakGlassReview{Reviewer: person.Principal, Groups: person.Groups, Outcome: approval.ReviewOutcome(req.GetOutcome()), Notes: req.GetNotes()}
	// The review, its records and, for an unjustified use, the queued
	// revocation of its credential commit together.
	var (
		bg      approval.BreakGlass
		refused error
		plan    revoke.Plan
	)
	err = s.commitDecision(ctx, func(ctx context.Context, d *decision) error {
		refused, plan = nil, revoke.Plan{}
		var err error
		if bg, err = d.svc.ReviewBreakGlass(ctx, req.GetId(), rev); err != nil {
			refused = err
			ev := audit.Event{Action: ActionBreakGlassReviewRefused, Actor: person.Principal.String(), Outcome: outcomeOf(err), Reason: reasonOf(err),
				Details: map[string]string{"break_glass_id": truncate(req.GetId(), 64), "verdict": truncate(req.GetOutcome(), 32)}}
			if err := d.record(ev); err != nil {
				return fmt.Errorf("record refused review (%v): %w", refused, err)
			}
			return nil
		}
		ev := bgEvent(ActionBreakGlassReview, req.GetOutcome(), bg, approval.Grant{ID: bg.GrantID}, approval.Credential{Ref: bg.Credential}, req.GetNotes())
		ev.Actor = person.Principal.String()
		if err := d.record(ev); err != nil {
			return fmt.Errorf("record review of %s: %w", bg.ID, err)
		}
		if bg.State != approval.BreakGlassClosed {
			return nil
		}
		var revoked []approval.GrantRecord
		if bg.Outcome == approval.OutcomeUnjustified && bg.Credential.ID != "" {
			revoked = []approval.GrantRecord{{GrantID: bg.GrantID, Ref: bg.Credential, IssuedAt: bg.TakenAt}}
		}
		if plan, err = d.queue(bg.ID, revoked); err != nil {
			return err
		}
		closed := bgEvent(ActionBreakGlassClosed, string(bg.Outcome), bg, approval.Grant{ID: bg.GrantID}, approval.Credential{Ref: bg.Credential}, req.GetNotes())
		closed.Actor = person.Principal.String()
		if err := d.record(closed); err != nil {
			return fmt.Errorf("record closing of %s: %w", bg.ID, err)
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, s.toStatus(ctx, err)
	case refused != nil:
		return nil, s.toStatus(ctx, refused)
	}
	resp := &adminv1.ReviewBreakGlassResponse{Record: s.bgToProto(bg)}
	if bg.State != approval.BreakGlassClosed {
		return resp, nil
	}
	receipt := s.finishRevocation(ctx, plan, func(res revoke.Result) audit.Event {
		ev := bgEvent(ActionCredentialRevoked, string(res.Outcome), bg, approval.Grant{ID: res.GrantID}, approval.Credential{Ref: res.Ref}, "break-glass found unjustified")
		ev.Actor = person.Principal.String()
		if res.Error != "" {
			ev.Reason = truncate(res.Error, 1024)
		}
		return ev
	})
	for _, res := range receipt.Results {
		resp.Results = append(resp.Results, &adminv1.RevocationResult{GrantId: res.GrantID, Kind: string(res.Ref.Kind), Reference: res.Ref.ID, Outcome: string(res.Outcome), Error: res.Error})
	}
	s.notifier.Notify(ctx, notify.Event{Kind: notify.KindBreakGlassReview, RequestID: bg.ID, Entitlement: bg.Entitlement,
		Beneficiary: bg.Beneficiary.String(), Actor: person.Principal.String(), Reason: req.GetNotes(),
		Fields: map[string]string{"outcome": string(bg.Outcome), "taker": bg.Taker.String()}})
	return resp, nil
}

// EscalateOnce escalates break-glass reviews that became overdue (once
// each, even with several replicas) and updates the overdue gauge.
func (s *Server) EscalateOnce(ctx context.Context) {
	overdue, err := s.approvals.ListBreakGlass(ctx, approval.BreakGlassFilter{Overdue: true})
	if err != nil {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, approval.ErrUnsupported) {
			s.log.ErrorContext(ctx, "escalate overdue break-glass reviews", slog.Any("error", err))
		}
		return
	}
	for _, cand := range overdue {
		if !cand.EscalatedAt.IsZero() || ctx.Err() != nil {
			continue
		}
		// The escalation and its record commit together: each overdue
		// review is escalated, and recorded, once.
		var (
			bg      approval.BreakGlass
			changed bool
		)
		err := s.commitDecision(ctx, func(ctx context.Context, d *decision) error {
			var err error
			if bg, changed, err = d.svc.EscalateOne(ctx, cand.ID); err != nil || !changed {
				return err
			}
			ev := bgEvent(ActionBreakGlassOverdue, "escalated", bg, approval.Grant{ID: bg.GrantID}, approval.Credential{Ref: bg.Credential}, "review overdue")
			ev.Actor = "writd"
			return d.record(ev)
		})
		if err != nil {
			s.log.ErrorContext(ctx, "escalate break-glass review", slog.String("break_glass_id", cand.ID), slog.Any("error", err))
			continue
		}
		if !changed {
			continue
		}
		e, _ := s.policy.Load().Lookup(bg.Entitlement)
		var reviewers []string
		if e != nil && e.BreakGlass != nil {
			reviewers = e.BreakGlass.ReviewerGroups
		}
		s.notifier.Notify(ctx, notify.Event{Kind: "breakglass.overdue", RequestID: bg.ID, Entitlement: bg.Entitlement,
			Beneficiary: bg.Beneficiary.String(), Actor: bg.Taker.String(), Reason: bg.Reason, Until: bg.ReviewDue, Recipients: reviewers,
			Fields: map[string]string{"review_due": bg.ReviewDue.Format(time.RFC3339), "escalation": "review overdue"}})
		s.log.WarnContext(ctx, "break-glass review overdue", slog.String("break_glass_id", bg.ID), slog.String("taker", bg.Taker.String()))
	}
	if overdue, err := s.approvals.ListBreakGlass(ctx, approval.BreakGlassFilter{Overdue: true}); err == nil {
		s.metrics.setOverdue(len(overdue))
	}
}

func (s *Server) bgToProto(bg approval.BreakGlass) *adminv1.BreakGlassRecord {
	out := &adminv1.BreakGlassRecord{
		Id: bg.ID, Taker: bg.Taker.String(), Beneficiary: bg.Beneficiary.String(), Entitlement: bg.Entitlement,
		Reason: bg.Reason, Incident: bg.Incident, GrantId: bg.GrantID, CredentialKind: string(bg.Credential.Kind),
		CredentialReference: bg.Credential.ID, CredentialExpiresAt: ts(bg.Credential.Expires), TakenAt: ts(bg.TakenAt),
		ReviewDue: ts(bg.ReviewDue), State: string(bg.State), Outcome: string(bg.Outcome), ClosedAt: ts(bg.ClosedAt),
		EscalatedAt: ts(bg.EscalatedAt), Overdue: bg.Overdue(s.now()),
	}
	for _, r := range bg.Reviews {
		out.Reviews = append(out.Reviews, &adminv1.BreakGlassReview{Reviewer: r.Reviewer.String(), Outcome: string(r.Outcome), Notes: r.Notes, At: ts(r.At)})
	}
	return out
}
