package broker

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/notify"
	"github.com/writ-dev/writ/internal/revoke"
	"github.com/writ-dev/writ/internal/txn"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Issuer mints credentials of one kind.
type Issuer interface {
	// Issue mints a credential for g. The credential must not outlive g.Expires.
	Issue(ctx context.Context, g approval.Grant) (approval.Credential, error)
	// Revoke ends the credential early. Revoking an already ended credential
	// succeeds.
	Revoke(ctx context.Context, ref approval.CredentialRef) error
}

// Ledger durably records events.
type Ledger interface {
	// Append returns once e is durably recorded.
	Append(ctx context.Context, e audit.Event) (audit.Entry, error)
}

// Approvals is the approval service: requests, reviews and the live
// approvals credentials are minted under.
type Approvals interface {
	Submit(ctx context.Context, in approval.RequestInput) (approval.Request, error)
	Review(ctx context.Context, id string, rev approval.Review) (approval.Request, error)
	Revoke(ctx context.Context, id string, by approval.Principal, reason string) (approval.Revocation, error)
	Get(ctx context.Context, id string) (approval.Request, error)
	List(ctx context.Context, f approval.Filter) ([]approval.Request, error)
	Authorize(ctx context.Context, beneficiary approval.Principal, entitlement string, ttl time.Duration, grantID string) (approval.Grant, error)
	RecordGrant(ctx context.Context, g approval.GrantRecord) error
	Grants(ctx context.Context, requestID string) ([]approval.GrantRecord, error)
	GrantsFor(ctx context.Context, beneficiary approval.Principal, since time.Time, limit int) ([]approval.GrantRecord, error)
	Due(ctx context.Context) ([]approval.Request, error)

	PrepareBreakGlass(ctx context.Context, in approval.BreakGlassInput, grantID string) (approval.BreakGlass, approval.Grant, error)
	GetBreakGlass(ctx context.Context, id string) (approval.BreakGlass, error)
	ListBreakGlass(ctx context.Context, f approval.BreakGlassFilter) ([]approval.BreakGlass, error)

	// In returns the service bound to a transaction of Config.Commit: the
	// decisions are made through it, so that each commits with its ledger
	// records and the revocations it implies.
	In(tx approval.Tx) *approval.Service
}

// LedgerPreparer builds ledger entries for a transaction of Config.Commit
// (audit.Log does).
type LedgerPreparer interface {
	Prepare(e audit.Event) (audit.Build, error)
}

// Revoker revokes credentials. The broker queues the revocations a decision
// implies in the decision's own transaction (Plan's Items), then attempts
// them.
type Revoker interface {
	Plan(requestID string, grants []approval.GrantRecord) revoke.Plan
	Attempt(ctx context.Context, p revoke.Plan) revoke.Receipt
}

// Notifier sends notifications; it must never block.
type Notifier interface {
	Notify(ctx context.Context, e notify.Event)
}

// IssuerLimiter is implemented by issuers whose backend has its own TTL
// limits (a Vault token role's max TTL), so approvers see the honest TTL.
type IssuerLimiter interface {
	MaxTTL(ctx context.Context, r approval.Recipe) (time.Duration, error)
}

// Config configures a Server.
type Config struct {
	// Policy is the policy in force. Required. Every ledger record the
	// broker writes carries its Hash in Details["policy"] (none when the
	// Hash is empty); RecordPolicy records its Text.
	Policy *approval.Policy
	// Issuers mint credentials by kind. Every kind the policy uses needs one.
	Issuers map[approval.CredentialKind]Issuer
	// Ledger records every grant and denial. Required.
	Ledger Ledger
	// Operators may call the admin API with their SVIDs; they see every
	// request and break-glass use. They are matched with
	// spiffeid.MatchOneOf.
	Operators []spiffeid.ID
	// AuditorGroups are people's groups that may see every request and
	// break-glass use (people otherwise see only what concerns them) and
	// read the ledger (export, search, snapshot, proofs); empty means
	// DefaultAuditorGroups.
	AuditorGroups []string
	// Approvals is required when the policy has an entitlement with
	// approval mode "approvers".
	Approvals Approvals
	// People verifies people's ID tokens on the admin listener; nil means
	// people cannot sign in.
	People PersonVerifier
	// Revoker revokes credentials under a revoked or expired approval.
	// Required with Approvals.
	Revoker Revoker
	// Commit runs each decision (a request, a review, a revocation, an
	// expiry, a break-glass use and its review) in one transaction with its
	// ledger records and the revocations it implies. Required with
	// Approvals; Ledger must then be a LedgerPreparer over the same store.
	Commit txn.Committer
	// DenyListKinds are the credential kinds whose issuers revoke by putting
	// the credential's ID on the deny-list of the Commit store (Writ's own
	// JWTs). A decision that revokes such credentials denies them in its own
	// transaction, so they are refused from the moment it commits, crash or
	// not; they are queued for their issuer too, harmlessly.
	DenyListKinds []approval.CredentialKind
	// Notifier receives request events; nil sends none.
	Notifier Notifier
	// Grants finds a credential's newest ledger entry, for RenewCredential
	// and ReleaseCredential; nil disables them.
	Grants GrantLookup
	// Limits bound what one caller can take; the zero value sets no rate
	// limits or caps (see DefaultLimits).
	Limits Limits
	// LimitNow is the clock of the rate limiters; defaults to time.Now (not
	// Now: limits measure real time even when Now is a test's fixed clock).
	LimitNow func() time.Time
	// Changes wakes WatchRequest streams; nil uses an in-process Hub that
	// this broker's own changes signal.
	Changes RequestChanges
	// Records reads the stored ledger for auditors (ExportLedger,
	// SearchLedger, Snapshot, ProveRecord) and for the evidence GetBreakGlass
	// shows; nil disables them.
	Records LedgerReader
	// Intents, if set, durably records every credential minted through an
	// issuer that implements OrphanFinder (Vault tokens and leases) before
	// it is minted, for the reconciler (ReconcileIntents, reliability case
	// T1). Nil disables intents: a crash between minting and recording
	// then leaves the credential live until its TTL.
	Intents IntentStore
	// Metrics, if set, receives grant and ledger measurements.
	Metrics *Metrics
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// NewID returns a fresh grant ID; defaults to 128 random bits.
	NewID func() string
	// RevokeTimeout bounds the revocation of a credential that could not be
	// recorded; defaults to 10s.
	RevokeTimeout time.Duration
}

// Server implements the workload and admin gRPC services.
type Server struct {
	brokerv1.UnsafeBrokerServiceServer
	adminv1.UnsafeAdminServiceServer

	policy        atomic.Pointer[approval.Policy]
	issuers       map[approval.CredentialKind]Issuer
	ledger        Ledger
	approvals     Approvals
	people        PersonVerifier
	revoker       Revoker
	commit        txn.Committer
	denyListed    map[approval.CredentialKind]bool
	prep          LedgerPreparer
	notifier      Notifier
	grants        GrantLookup
	hub           *Hub
	changes       RequestChanges
	operators     spiffeid.Matcher
	auditorGroups []string
	limitCfg      Limits
	limits        *limiters
	watchPoll     time.Duration
	rejected      *rejectLog
	records       LedgerReader
	metrics       *Metrics
	log           *slog.Logger
	now           func() time.Time
	newID         func() string
	revokeTimeout time.Duration

	intents  IntentStore
	inflight inflight
	// afterMint is the test crash hook: returning true stops the pipeline
	// right after the issuer minted, as a kill -9 would.
	afterMint func(approval.Grant) bool
}

var (
	_ brokerv1.BrokerServiceServer = (*Server)(nil)
	_ adminv1.AdminServiceServer   = (*Server)(nil)
)

// New returns a Server. It checks that every credential kind the policy
// uses has an issuer, so a misconfiguration is found before serving.
func New(cfg Config) (*Server, error) {
	if cfg.Policy == nil || cfg.Ledger == nil {
		return nil, errors.New("broker: Policy and Ledger are required")
	}
	if err := checkIssuers(cfg.Policy, cfg.Issuers); err != nil {
		return nil, err
	}
	if (cfg.Approvals == nil) != (cfg.Revoker == nil) {
		return nil, errors.New("broker: Approvals and Revoker go together")
	}
	prep, _ := cfg.Ledger.(LedgerPreparer)
	if cfg.Approvals != nil && (cfg.Commit == nil || prep == nil) {
		return nil, errors.New("broker: Approvals need Commit, and a Ledger that is a LedgerPreparer, so that decisions and their records commit together")
	}
	if cfg.Approvals == nil && usesApprovers(cfg.Policy) {
		return nil, errors.New("broker: the policy has entitlements with approval mode approvers, but no approval service is configured")
	}
	s := &Server{
		issuers:       cfg.Issuers,
		ledger:        cfg.Ledger,
		approvals:     cfg.Approvals,
		people:        cfg.People,
		revoker:       cfg.Revoker,
		commit:        cfg.Commit,
		denyListed:    make(map[approval.CredentialKind]bool, len(cfg.DenyListKinds)),
		prep:          prep,
		notifier:      cfg.Notifier,
		grants:        cfg.Grants,
		hub:           NewHub(),
		changes:       cfg.Changes,
		operators:     spiffeid.MatchOneOf(cfg.Operators...),
		auditorGroups: slices.Clone(cfg.AuditorGroups),
		limitCfg:      cfg.Limits,
		watchPoll:     cfg.Limits.WatchPoll,
		records:       cfg.Records,
		metrics:       cfg.Metrics,
		log:           cfg.Logger,
		now:           cfg.Now,
		newID:         cfg.NewID,
		revokeTimeout: cfg.RevokeTimeout,
		intents:       cfg.Intents,
	}
	for _, k := range cfg.DenyListKinds {
		s.denyListed[k] = true
	}
	if len(s.auditorGroups) == 0 {
		s.auditorGroups = DefaultAuditorGroups
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.changes == nil {
		s.changes = s.hub
	}
	if s.watchPoll <= 0 {
		s.watchPoll = 30 * time.Second
	}
	limitNow := cfg.LimitNow
	if limitNow == nil {
		limitNow = time.Now
	}
	s.limits = newLimiters(cfg.Limits, limitNow)
	s.rejected = newRejectLog(s.log, limitNow)
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = NewGrantID
	}
	if s.notifier == nil {
		s.notifier = nopNotifier{}
	}
	if s.revokeTimeout <= 0 {
		s.revokeTimeout = 10 * time.Second
	}
	s.policy.Store(cfg.Policy)
	return s, nil
}

func checkIssuers(p *approval.Policy, issuers map[approval.CredentialKind]Issuer) error {
	var errs []error
	for _, name := range p.Names() {
		kind := p.Entitlements[name].Recipe.Kind
		if issuers[kind] == nil {
			errs = append(errs, fmt.Errorf("entitlement %q uses issuer %q, which is not configured", name, kind))
		}
	}
	return errors.Join(errs...)
}

func usesApprovers(p *approval.Policy) bool {
	for _, e := range p.Entitlements {
		if e.Mode == approval.ModeApprovers {
			return true
		}
	}
	return false
}

type nopNotifier struct{}

func (nopNotifier) Notify(context.Context, notify.Event) {}

// RegisterAdmin registers only the admin service, for the admin listener
// where people authenticate with ID tokens.
func (s *Server) RegisterAdmin(r grpc.ServiceRegistrar) {
	adminv1.RegisterAdminServiceServer(r, s)
}

// Register registers the workload and admin services on r.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	brokerv1.RegisterBrokerServiceServer(r, s)
	adminv1.RegisterAdminServiceServer(r, s)
}

// Policy returns the policy in force.
func (s *Server) Policy() *approval.Policy { return s.policy.Load() }

// NewGrantID returns "g_" followed by 128 random bits in lowercase base32.
func NewGrantID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return "g_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
