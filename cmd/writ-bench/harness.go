package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/daemon"
	"github.com/writ-dev/writ/internal/jwtissuer"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
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
	// Dir holds the policy, the SVID files, the bbolt file and the JWT
	// signing key.
	Dir string
	// PKI supplies the server SVID and trust bundle.
	PKI *pki
	// Ledger is ledgerDurable or ledgerMemory.
	Ledger string
	// Vault, if set, issues bench-vault grants through the daemon's own
	// Vault client, logged in with a token.
	Vault *vaultTarget
	// Checkpoints, if set, is the ledger's checkpoint and witness
	// configuration (otherwise the daemon's defaults, no witnesses).
	Checkpoints *daemon.LedgerConfig
	// NoCheckpoints runs the broker without the checkpointer: the
	// checkpoints-off baseline (daemon.Options.NoCheckpoints).
	NoCheckpoints bool
}

// vaultTarget is a Vault the broker mints tokens from.
type vaultTarget struct {
	Address, Token string
}

// brokerHarness is a broker built by internal/daemon, exactly as writd
// serve builds it, from a configuration file's worth of settings: policy,
// SVID files, bbolt ledger, EdDSA JWT issuer, optional Vault issuer,
// metrics, an info-level JSON logger (written to io.Discard, so formatting
// is paid but not I/O) and the same server options. Only the gRPC listener
// is opened (no HTTP or admin listener), and the memory ledger variant
// replaces the durable ledger.
type brokerHarness struct {
	Addr   string
	d      *daemon.Daemon
	memory bool
}

func startBroker(cfg brokerConfig) (_ *brokerHarness, err error) {
	files, err := devca.WriteSVID(filepath.Join(cfg.Dir, "svid"), cfg.PKI.server.SVID, cfg.PKI.server.Bundle)
	if err != nil {
		return nil, err
	}
	policyFile := filepath.Join(cfg.Dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(benchPolicy(cfg.Vault != nil)), 0o600); err != nil {
		return nil, err
	}
	c := daemon.DefaultConfig()
	c.Listen = "127.0.0.1:0"
	c.HTTP.Listen = ""
	c.SVID = daemon.SVIDConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, ReloadInterval: time.Minute}
	c.Policy = policyFile
	c.DataDir = filepath.Join(cfg.Dir, "data")
	c.JWT = daemon.JWTConfig{Issuer: "https://writ-bench.invalid", Algorithm: jwtissuer.AlgEdDSA}
	c.Log = daemon.LogConfig{Level: "info", Format: "json"}
	// One bench principal stands in for a fleet of workloads: the
	// per-principal grant limit, made to stop exactly that, is off.
	c.Limits.Grants.PerSecond = 0
	if v := cfg.Vault; v != nil {
		tokenFile := filepath.Join(cfg.Dir, "vault-token")
		if err := os.WriteFile(tokenFile, []byte(v.Token), 0o600); err != nil {
			return nil, err
		}
		c.Vault = &daemon.VaultConfig{Address: v.Address, TokenFile: tokenFile, Timeout: 10 * time.Second}
	}
	if cfg.Checkpoints != nil {
		c.Ledger = *cfg.Checkpoints
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("bench broker configuration: %w", err)
	}
	opts := daemon.Options{LogOutput: io.Discard, NoCheckpoints: cfg.NoCheckpoints}
	switch cfg.Ledger {
	case ledgerDurable:
	case ledgerMemory:
		opts.Ledger = &memLedger{}
	default:
		return nil, fmt.Errorf("unknown ledger %q", cfg.Ledger)
	}
	d, err := daemon.New(context.Background(), c, opts)
	if err != nil {
		return nil, err
	}
	return &brokerHarness{Addr: d.GRPCAddr.String(), d: d, memory: cfg.Ledger == ledgerMemory}, nil
}

// VerifyLedger checks the durable ledger's hash chain and returns its
// length; it reports ok=false for the memory ledger.
func (h *brokerHarness) VerifyLedger(ctx context.Context) (records uint64, ok bool, err error) {
	if h.memory {
		return 0, false, nil
	}
	sum, err := audit.Verify(ctx, h.d.Store())
	return sum.Records, true, err
}

// Close stops the broker as writd does and closes its store.
func (h *brokerHarness) Close() error {
	return h.d.Shutdown()
}

// memLedger is the no-ledger upper bound: it numbers events and keeps
// nothing. Production never uses it.
type memLedger struct{ seq atomic.Uint64 }

// Append implements broker.Ledger.
func (l *memLedger) Append(_ context.Context, e audit.Event) (audit.Entry, error) {
	return audit.Entry{Seq: l.seq.Add(1), Time: time.Now().UTC(), Event: e}, nil
}

// Prepare implements broker.LedgerPreparer, which the broker requires with
// approvals configured: the few decisions a bench makes are recorded in the
// store's own ledger, in their transaction; grants, which are measured, go
// through Append.
func (l *memLedger) Prepare(e audit.Event) (audit.Build, error) {
	return audit.Prepare(e, time.Now())
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
