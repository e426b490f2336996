package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/jwtissuer"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/store/boltstore"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Identities of the benchmark's broker and its one client.
var (
	benchTD  = spiffeid.RequireTrustDomainFromString("bench.writ.test")
	brokerID = spiffeid.RequireFromPath(benchTD, "/writd")
	clientID = spiffeid.RequireFromPath(benchTD, "/bench/client")
)

// Entitlements in benchPolicy.
const (
	entJWT   = "bench-jwt"
	entVault = "bench-vault"
	// vaultRole is the Vault token role bench-vault issues from.
	vaultRole = "writ-bench"
)

// benchPolicy is the policy every scenario's broker runs: auto-approved
// grants for the benchmark client, as cheap to decide as a policy gets.
func benchPolicy(withVault bool) string {
	p := fmt.Sprintf(`version: 1
trust_domain: %s
entitlements:
  - name: %s
    owner: bench
    purpose: load test
    max_ttl: 15m
    requesters: [%s]
    issuer: {jwt: {audience: [bench-api]}}
    approval: {mode: auto}
`, benchTD.Name(), entJWT, clientID)
	if withVault {
		p += fmt.Sprintf(`  - name: %s
    owner: bench
    purpose: load test
    max_ttl: 1h
    requesters: [%s]
    issuer: {vault_token: {role: %s}}
    approval: {mode: auto}
`, entVault, clientID, vaultRole)
	}
	return p
}

// memSource serves one SVID and bundle from memory.
type memSource struct {
	*x509svid.SVID
	*x509bundle.Bundle
}

// Close implements spiffe.Source.
func (memSource) Close() error { return nil }

// pki is a development CA with the broker's and the client's SVIDs
// (ECDSA P-256, as devca issues them).
type pki struct {
	server, client memSource
}

func newPKI() (*pki, error) {
	ca, err := devca.New(benchTD)
	if err != nil {
		return nil, err
	}
	srv, err := ca.Issue(brokerID, devca.IssueOptions{})
	if err != nil {
		return nil, err
	}
	cli, err := ca.Issue(clientID, devca.IssueOptions{})
	if err != nil {
		return nil, err
	}
	return &pki{server: memSource{srv, ca.Bundle()}, client: memSource{cli, ca.Bundle()}}, nil
}

// clientCreds are the client's mTLS credentials: its SVID, and only the
// broker's SPIFFE ID is accepted on the other end.
func (p *pki) clientCreds() credentials.TransportCredentials {
	return spiffe.ClientCredentials(p.client, tlsconfig.AuthorizeID(brokerID))
}

// Ledger kinds for brokerConfig.
const (
	ledgerDurable = "durable" // audit.Log over bbolt, as in production
	ledgerMemory  = "memory"  // memLedger: the no-ledger upper bound
)

// brokerConfig configures an in-process broker.
type brokerConfig struct {
	// Dir holds the bbolt file and the JWT signing key.
	Dir string
	// PKI supplies the server SVID and trust bundle.
	PKI *pki
	// Ledger is ledgerDurable or ledgerMemory.
	Ledger string
	// Vault, if set, issues bench-vault grants.
	Vault broker.Issuer
}

// brokerHarness is a broker serving gRPC with mTLS on a loopback port,
// wired as cmd/writd wires it: policy, bbolt ledger, EdDSA JWT issuer,
// optional Vault issuer, metrics, an info-level JSON logger (written to
// io.Discard, so formatting is paid but not I/O) and the same server
// options.
type brokerHarness struct {
	Addr  string
	store *boltstore.Store // nil with the memory ledger
	gs    *grpc.Server
}

func startBroker(cfg brokerConfig) (_ *brokerHarness, err error) {
	pol, err := policy.Parse("bench-policy.yaml", []byte(benchPolicy(cfg.Vault != nil)))
	if err != nil {
		return nil, err
	}
	h := &brokerHarness{}
	defer func() {
		if err != nil {
			_ = h.Close()
		}
	}()
	var ledger broker.Ledger
	switch cfg.Ledger {
	case ledgerDurable:
		if h.store, err = boltstore.Open(filepath.Join(cfg.Dir, "writ.db"), boltstore.Options{}); err != nil {
			return nil, err
		}
		if ledger, err = audit.New(audit.Config{Store: h.store}); err != nil {
			return nil, err
		}
	case ledgerMemory:
		ledger = &memLedger{}
	default:
		return nil, fmt.Errorf("unknown ledger %q", cfg.Ledger)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	jwtIss, err := jwtissuer.New(jwtissuer.Config{
		KeyFile:   filepath.Join(cfg.Dir, "jwt-signing-key.pem"),
		Algorithm: jwtissuer.AlgEdDSA,
		Issuer:    "https://writ-bench.invalid",
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	issuers := map[approval.CredentialKind]broker.Issuer{approval.KindJWT: jwtIss}
	if cfg.Vault != nil {
		issuers[approval.KindVaultToken] = cfg.Vault
	}
	srv, err := broker.New(broker.Config{
		Policy:  pol,
		Issuers: issuers,
		Ledger:  ledger,
		Metrics: broker.NewMetrics(prometheus.NewRegistry(), func(name string) bool { _, ok := pol.Entitlements[name]; return ok }),
		Logger:  logger,
	})
	if err != nil {
		return nil, err
	}
	h.gs = grpc.NewServer(
		grpc.Creds(spiffe.ServerCredentials(cfg.PKI.server, tlsconfig.AuthorizeMemberOf(benchTD))),
		grpc.ChainUnaryInterceptor(srv.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(srv.StreamInterceptor()),
		grpc.MaxRecvMsgSize(64<<10),
		grpc.MaxConcurrentStreams(256),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute}),
	)
	srv.Register(h.gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h.Addr = lis.Addr().String()
	go func() { _ = h.gs.Serve(lis) }()
	return h, nil
}

// VerifyLedger checks the durable ledger's hash chain and returns its
// length; it reports ok=false for the memory ledger.
func (h *brokerHarness) VerifyLedger(ctx context.Context) (records uint64, ok bool, err error) {
	if h.store == nil {
		return 0, false, nil
	}
	sum, err := audit.Verify(ctx, h.store)
	return sum.Records, true, err
}

// Close stops the server and closes the store.
func (h *brokerHarness) Close() error {
	if h.gs != nil {
		h.gs.Stop()
	}
	if h.store != nil {
		return h.store.Close()
	}
	return nil
}

// memLedger is the no-ledger upper bound: it numbers events and keeps
// nothing. Production never uses it.
type memLedger struct{ seq atomic.Uint64 }

// Append implements broker.Ledger.
func (l *memLedger) Append(_ context.Context, e audit.Event) (audit.Entry, error) {
	return audit.Entry{Seq: l.seq.Add(1), Time: time.Now().UTC(), Event: e}, nil
}

// issueOp returns an Op that requests entitlement over client.
func issueOp(client brokerv1.BrokerServiceClient, entitlement string) Op {
	req := &brokerv1.IssueCredentialRequest{Entitlement: entitlement}
	return func(ctx context.Context) error {
		resp, err := client.IssueCredential(ctx, req)
		if err == nil && resp.GetCredential().GetSecret() == "" {
			err = errors.New("credential without a secret")
		}
		return err
	}
}

// dialOp returns an Op that opens a new connection to addr for every grant
// (TCP connect, full TLS handshake with mutual SVID verification, HTTP/2
// setup), requests entitlement and closes the connection.
func dialOp(addr string, creds credentials.TransportCredentials, entitlement string) Op {
	return func(ctx context.Context) error {
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer cc.Close()
		return issueOp(brokerv1.NewBrokerServiceClient(cc), entitlement)(ctx)
	}
}

// dial opens a persistent connection to addr.
func dial(addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
}
