package broker

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Rule says who may call one RPC. A caller allowed by any field may call;
// the zero Rule allows nobody.
type Rule struct {
	// Public methods need no identity at all (health checks, reflection).
	Public bool
	// Workloads allows any authenticated workload (X.509-SVID or JWT-SVID).
	Workloads bool
	// Operators allows workloads matched by Config.Operators.
	Operators bool
	// People allows any signed-in person.
	People bool
	// PeopleIn allows people in at least one of these groups.
	PeopleIn []string
	// Auditors allows people in at least one of Config.AuditorGroups.
	Auditors bool
	// Limit is the per-principal rate limit the call counts against.
	Limit limitClass
}

// limitClass names a per-principal token bucket (see Limits).
type limitClass int

const (
	noLimit     limitClass = iota
	limitGrant             // credentials: issue, break-glass, renew
	limitSubmit            // new access requests
)

// Public health and reflection methods, by full name.
const (
	healthCheck       = "/grpc.health.v1.Health/Check"
	healthList        = "/grpc.health.v1.Health/List"
	healthWatch       = "/grpc.health.v1.Health/Watch"
	reflectionV1      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflectionV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// Common rules.
var (
	anyWorkload  = Rule{Workloads: true}
	staff        = Rule{Operators: true, People: true} // operators and anyone signed in
	anyPerson    = Rule{People: true}
	publicMethod = Rule{Public: true}
	auditors     = Rule{Operators: true, Auditors: true}
)

// rules is the authorization table: every RPC any listener serves and who
// may call it. One interceptor enforces it before any handler runs; a method
// missing here is refused, and a test fails on any registered method
// without a rule. Handlers further narrow what a caller sees (people see
// only the requests they asked for, benefit from or may review), but never
// widen it.
var rules = map[string]Rule{
	// Workload API: the calling workload is the beneficiary.
	brokerv1.BrokerService_IssueCredential_FullMethodName:   {Workloads: true, Limit: limitGrant},
	brokerv1.BrokerService_RequestAccess_FullMethodName:     {Workloads: true, Limit: limitSubmit},
	brokerv1.BrokerService_WatchRequest_FullMethodName:      anyWorkload,
	brokerv1.BrokerService_BreakGlass_FullMethodName:        {Workloads: true, Limit: limitGrant},
	brokerv1.BrokerService_RenewCredential_FullMethodName:   {Workloads: true, Limit: limitGrant},
	brokerv1.BrokerService_ReleaseCredential_FullMethodName: anyWorkload,

	// Admin API: reading the policy is for operators and anyone signed in.
	adminv1.AdminService_ListEntitlements_FullMethodName: staff,
	adminv1.AdminService_WhoAmI_FullMethodName:           staff,
	adminv1.AdminService_ExplainPolicy_FullMethodName:    staff,
	// Requests: people see what concerns them; operators and auditors all.
	adminv1.AdminService_ListRequests_FullMethodName:  {Operators: true, People: true, Auditors: true},
	adminv1.AdminService_GetRequest_FullMethodName:    {Operators: true, People: true, Auditors: true},
	adminv1.AdminService_CreateRequest_FullMethodName: {People: true, Limit: limitSubmit},
	// Reviews are made by people (separation of duties is by person).
	adminv1.AdminService_ApproveRequest_FullMethodName: anyPerson,
	adminv1.AdminService_DenyRequest_FullMethodName:    anyPerson,
	// Revocation: operators, the requester and the entitlement's approvers
	// (the handler checks the last two).
	adminv1.AdminService_RevokeRequest_FullMethodName: staff,
	// Break-glass.
	adminv1.AdminService_TakeBreakGlass_FullMethodName:   {People: true, Limit: limitGrant},
	adminv1.AdminService_ListBreakGlass_FullMethodName:   {Operators: true, People: true, Auditors: true},
	adminv1.AdminService_GetBreakGlass_FullMethodName:    {Operators: true, People: true, Auditors: true},
	adminv1.AdminService_ReviewBreakGlass_FullMethodName: anyPerson,

	// The ledger: operators and the auditor groups.
	adminv1.AdminService_ExportLedger_FullMethodName: auditors,
	adminv1.AdminService_SearchLedger_FullMethodName: auditors,
	adminv1.AdminService_Snapshot_FullMethodName:     auditors,
	adminv1.AdminService_ProveRecord_FullMethodName:  auditors,

	// Health checks and reflection carry no secrets.
	healthCheck:       publicMethod,
	healthList:        publicMethod,
	healthWatch:       publicMethod,
	reflectionV1:      publicMethod,
	reflectionV1Alpha: publicMethod,
}

// RuleFor returns the authorization rule of a method ("/pkg.Service/Method").
func RuleFor(fullMethod string) (Rule, bool) {
	r, ok := rules[fullMethod]
	return r, ok
}

// Methods returns every method that has a rule, sorted.
func Methods() []string {
	return slices.Sorted(maps.Keys(rules))
}

// admit is the one gate in front of every handler: it finds the method's
// rule, authenticates the caller the listener's way, authorizes the caller
// by the rule, and counts the call against the rule's rate limit. The
// context it returns carries the authorized caller.
func (s *Server) admit(ctx context.Context, method string, auth authFunc) (context.Context, error) {
	rule, ok := rules[method]
	if !ok {
		// A registered method nobody wrote a rule for: fail closed.
		s.log.ErrorContext(ctx, "method has no authorization rule; refusing", slog.String("method", method))
		return nil, status.Error(codes.PermissionDenied, "this method has no authorization rule on this broker")
	}
	if rule.Public {
		return ctx, nil
	}
	ctx, err := auth(ctx, method)
	if err != nil {
		return nil, err
	}
	c, ok := callerFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no authenticated caller")
	}
	c, err = s.authorize(method, rule, c)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := s.limits.allow(rule.Limit, c.principal(), s.metrics); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return withCaller(ctx, c), nil
}

// authorize decides whether c may call method under r, and returns c with
// its roles (operator, auditor) filled in.
func (s *Server) authorize(method string, r Rule, c caller) (caller, error) {
	if c.person == nil {
		c.operator = !c.bearer && s.operators(c.workload) == nil
	} else {
		c.auditor = anyOf(c.person.Groups, s.auditorGroups)
	}
	switch {
	case r.Workloads && c.person == nil,
		r.Operators && c.operator,
		r.People && c.person != nil,
		c.person != nil && anyOf(c.person.Groups, r.PeopleIn),
		r.Auditors && c.auditor:
		return c, nil
	}
	name := methodName(method)
	switch {
	case c.person == nil && (r.Operators || r.Auditors) && !r.People && len(r.PeopleIn) == 0:
		return caller{}, fmt.Errorf("%s may not call %s (add it to admin.operators): %w", c.workload, name, errNotOperator)
	case c.person == nil && (r.People || len(r.PeopleIn) > 0) && !r.Operators:
		return caller{}, fmt.Errorf("%s: sign in as a person (writ login) to do this: %w", name, errNotPerson)
	case c.person == nil:
		return caller{}, fmt.Errorf("%s may not call %s (add it to admin.operators): %w", c.workload, name, errNotOperator)
	case r.Workloads && !r.People && len(r.PeopleIn) == 0 && !r.Auditors:
		return caller{}, fmt.Errorf("%s is for workloads: %w", name, errNotWorkload)
	case len(r.PeopleIn) > 0:
		return caller{}, fmt.Errorf("%s may not call %s: it needs membership in one of %v: %w", c.person.Principal, name, r.PeopleIn, errNotPermitted)
	case r.Auditors && !r.People:
		return caller{}, fmt.Errorf("%s may not call %s: it needs membership in one of the auditor groups %v (admin.auditor_groups): %w", c.person.Principal, name, s.auditorGroups, errNotPermitted)
	default:
		return caller{}, fmt.Errorf("%s may not call %s: %w", c.person.Principal, name, errNotPermitted)
	}
}

// methodName returns "Method" of "/pkg.Service/Method".
func methodName(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// anyOf reports whether have and want share an element.
func anyOf(have, want []string) bool {
	for _, g := range have {
		if slices.Contains(want, g) {
			return true
		}
	}
	return false
}
