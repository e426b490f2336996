package broker

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
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

// Config configures a Server.
type Config struct {
	// Policy is the policy in force. Required.
	Policy *approval.Policy
	// Issuers mint credentials by kind. Every kind the policy uses needs one.
	Issuers map[approval.CredentialKind]Issuer
	// Ledger records every grant and denial. Required.
	Ledger Ledger
	// Operators may call the admin API.
	Operators []spiffeid.ID
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
	operators     map[spiffeid.ID]bool
	metrics       *Metrics
	log           *slog.Logger
	now           func() time.Time
	newID         func() string
	revokeTimeout time.Duration
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
	s := &Server{
		issuers:       cfg.Issuers,
		ledger:        cfg.Ledger,
		operators:     make(map[spiffeid.ID]bool, len(cfg.Operators)),
		metrics:       cfg.Metrics,
		log:           cfg.Logger,
		now:           cfg.Now,
		newID:         cfg.NewID,
		revokeTimeout: cfg.RevokeTimeout,
	}
	for _, id := range cfg.Operators {
		s.operators[id] = true
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = NewGrantID
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
