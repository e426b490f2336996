package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/vault"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Scenario names accepted by -scenario, in the order "all" runs them.
const (
	scenarioFsync      = "fsync"
	scenarioLedger     = "ledger"
	scenarioConnection = "connection"
	scenarioVault      = "vault"
	// scenarioCheckpoints and scenarioCheckpointsFast compare ledger
	// checkpoints and witnesses on and off (checkpoints.go).
	scenarioCheckpoints     = "checkpoints"
	scenarioCheckpointsFast = "checkpoints-fast"
)

var scenarioOrder = []string{scenarioFsync, scenarioLedger, scenarioConnection, scenarioVault, scenarioCheckpoints, scenarioCheckpointsFast}

// scenarioAliases maps performance.md row numbers to scenario names.
var scenarioAliases = map[string]string{"r2": scenarioLedger, "r5": scenarioConnection, "r1": scenarioVault}

// closers collects cleanups and runs them in reverse.
type closers []func() error

func (c closers) Close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}

// ledgerScenario is R2: the grant pipeline with the production ledger
// against the same pipeline with a ledger that keeps nothing.
func ledgerScenario(dir string, p *pki) (_ *scenario, err error) {
	var cl closers
	defer func() {
		if err != nil {
			_ = cl.Close()
		}
	}()
	durable, err := startBroker(brokerConfig{Dir: mkdir(dir, "durable"), PKI: p, Ledger: ledgerDurable})
	if err != nil {
		return nil, err
	}
	cl = append(cl, durable.Close)
	memory, err := startBroker(brokerConfig{Dir: mkdir(dir, "memory"), PKI: p, Ledger: ledgerMemory})
	if err != nil {
		return nil, err
	}
	cl = append(cl, memory.Close)
	ccA, err := dial(durable.Addr, p.clientCreds())
	if err != nil {
		return nil, err
	}
	cl = append(cl, ccA.Close)
	ccB, err := dial(memory.Addr, p.clientCreds())
	if err != nil {
		return nil, err
	}
	cl = append(cl, ccB.Close)
	return &scenario{
		ID: "R2", Name: scenarioLedger,
		Title: "durable ledger vs no ledger",
		A: variant{Name: "durable", Op: issueOp(brokerv1.NewBrokerServiceClient(ccA), entJWT),
			Desc: "audit.Log over boltstore (bbolt; two fdatasyncs per commit), as in production"},
		B: variant{Name: "none", Op: issueOp(brokerv1.NewBrokerServiceClient(ccB), entJWT),
			Desc: "an in-memory ledger that only numbers events (upper bound; never in production)"},
		RatioName: "durable / none", NumIsA: true, Durable: true,
		Notes: []string{
			"Two brokers run side by side in this process, each reached over its own persistent mTLS connection; grants are auto-approved EdDSA JWTs.",
			"boltstore commits a lone append with `Update` and overlapping appends with `Batch` (group commit; bbolt's MaxBatchDelay is 10 ms), so under concurrent load one commit — two fdatasyncs — covers many grants.",
		},
		After: func(ctx context.Context) []string {
			n, _, err := durable.VerifyLedger(ctx)
			if err != nil {
				return []string{fmt.Sprintf("Durable ledger after the run: %d records, **verification failed**: %v", n, err)}
			}
			return []string{fmt.Sprintf("Durable ledger after the run: %d records; the hash chain verifies.", n)}
		},
		Close: cl.Close,
	}, nil
}

// connectionScenario is R5: one persistent mTLS connection against a new
// connection and handshake per grant, to the same durable broker.
func connectionScenario(dir string, p *pki) (_ *scenario, err error) {
	var cl closers
	defer func() {
		if err != nil {
			_ = cl.Close()
		}
	}()
	b, err := startBroker(brokerConfig{Dir: mkdir(dir, "broker"), PKI: p, Ledger: ledgerDurable})
	if err != nil {
		return nil, err
	}
	cl = append(cl, b.Close)
	cc, err := dial(b.Addr, p.clientCreds())
	if err != nil {
		return nil, err
	}
	cl = append(cl, cc.Close)
	return &scenario{
		ID: "R5", Name: scenarioConnection,
		Title: "persistent mTLS connection vs a new handshake per grant",
		A: variant{Name: "persistent", Op: issueOp(brokerv1.NewBrokerServiceClient(cc), entJWT),
			Desc: "one gRPC connection, multiplexed, opened once"},
		B: variant{Name: "handshake", Op: dialOp(b.Addr, p.clientCreds(), entJWT),
			Desc: "a new TCP connection, full mTLS handshake and HTTP/2 setup per grant, closed after it"},
		RatioName: "handshake / persistent", NumIsA: false, Durable: true,
		Notes: []string{
			"Both variants hit the same broker with the durable bbolt ledger. The client and the server are in the same process, so the CPU per grant includes both ends of each handshake.",
			tlsDetails(b.Addr, p),
		},
		After: func(ctx context.Context) []string {
			n, _, err := b.VerifyLedger(ctx)
			if err != nil {
				return []string{fmt.Sprintf("Ledger after the run: %d records, **verification failed**: %v", n, err)}
			}
			return []string{fmt.Sprintf("Ledger after the run: %d records; the hash chain verifies.", n)}
		},
		Close: cl.Close,
	}, nil
}

// tlsDetails makes one connection with the client's TLS configuration and
// describes what was negotiated.
func tlsDetails(addr string, p *pki) string {
	cfg := tlsconfig.MTLSClientConfig(p.client, p.client, tlsconfig.AuthorizeID(brokerID))
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "TLS parameters could not be read: " + err.Error()
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return fmt.Sprintf("Negotiated with the client's configuration: %s, %s, key exchange %s, resumed: %v; both SVIDs are ECDSA P-256 leaf certificates signed by the dev CA. No session cache is configured, so every handshake is a full one.",
		tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID, st.DidResume)
}

// vaultScenario is R1: a Vault token through the broker against the same
// token created directly, from the same process, on the same Vault.
func vaultScenario(ctx context.Context, dir string, p *pki, bin string) (_ *scenario, err error) {
	var cl closers
	defer func() {
		if err != nil {
			_ = cl.Close()
		}
	}()
	v, err := startVaultDev(ctx, bin, mkdir(dir, "vault"))
	if err != nil {
		return nil, err
	}
	cl = append(cl, func() error { v.Close(); return nil })
	token, err := setupVault(ctx, v.Root)
	if err != nil {
		return nil, err
	}
	b, err := startBroker(brokerConfig{Dir: mkdir(dir, "broker"), PKI: p, Ledger: ledgerDurable, Vault: &vaultTarget{Address: v.Addr, Token: token}})
	if err != nil {
		return nil, err
	}
	cl = append(cl, b.Close)
	cc, err := dial(b.Addr, p.clientCreds())
	if err != nil {
		return nil, err
	}
	cl = append(cl, cc.Close)
	direct, err := vaultClient(v.Addr, token)
	if err != nil {
		return nil, err
	}
	return &scenario{
		ID: "R1", Name: scenarioVault,
		Title: "Vault token through the broker vs direct from Vault",
		A: variant{Name: "broker", Op: issueOp(brokerv1.NewBrokerServiceClient(cc), entVault), PeerPID: v.PID,
			Desc: "gRPC + mTLS → policy → read token role → auth/token/create → bbolt ledger → reply"},
		B: variant{Name: "direct", Op: directTokenOp(direct), PeerPID: v.PID,
			Desc: "auth/token/create/" + vaultRole + " from a vault/api client with the same token, request and transport settings"},
		RatioName: "broker / direct", NumIsA: true, Durable: true,
		Notes: []string{
			v.Version + " in dev mode: in-memory storage (no fsync), plain HTTP on loopback, no audit device. A production Vault with Raft or file storage is slower per token, which shrinks the broker's relative overhead.",
			"The broker makes two Vault requests per grant (it reads the role's TTL limits before creating the token) and one ledger append; the direct client makes one request. Both use HTTP keep-alive with at most 8 idle connections, as internal/vault does.",
			"Tokens are orphan, non-renewable, 1 h TTL, with the same metadata; none expire during the run. Vault's CPU is its process's utime+stime from /proc (10 ms resolution).",
		},
		After: func(ctx context.Context) []string {
			n, _, err := b.VerifyLedger(ctx)
			if err != nil {
				return []string{fmt.Sprintf("Ledger after the run: %d records, **verification failed**: %v", n, err)}
			}
			return []string{fmt.Sprintf("Ledger after the run: %d records; the hash chain verifies.", n)}
		},
		Close: cl.Close,
	}, nil
}

// setupVault creates the token role, the issuer policy and the token the
// broker and the direct client both use, and returns that token.
func setupVault(ctx context.Context, root *api.Client) (string, error) {
	tokenPolicy := "writ-bench-token"
	if err := root.Sys().PutPolicyWithContext(ctx, tokenPolicy, `path "secret/data/bench/*" { capabilities = ["read"] }`); err != nil {
		return "", fmt.Errorf("vault setup: %w", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/token/roles/"+vaultRole, map[string]any{
		"allowed_policies": []string{tokenPolicy},
		"orphan":           true,
	}); err != nil {
		return "", fmt.Errorf("vault setup: %w", err)
	}
	if err := root.Sys().PutPolicyWithContext(ctx, "writ-issuer", vault.IssuerPolicy(vaultRole)); err != nil {
		return "", fmt.Errorf("vault setup: %w", err)
	}
	s, err := root.Auth().Token().CreateOrphanWithContext(ctx, &api.TokenCreateRequest{
		Policies: []string{"writ-issuer"}, NoDefaultPolicy: true, TTL: "24h", DisplayName: "writ-bench",
	})
	if err != nil {
		return "", fmt.Errorf("vault setup: %w", err)
	}
	return s.Auth.ClientToken, nil
}

// directTokenOp creates a token from vaultRole the way internal/vault does,
// without the broker.
func directTokenOp(c *api.Client) Op {
	renewable := false
	return func(ctx context.Context) error {
		s, err := c.Auth().Token().CreateWithRoleWithContext(ctx, &api.TokenCreateRequest{
			TTL:            "3600s",
			ExplicitMaxTTL: "3600s",
			Renewable:      &renewable,
			DisplayName:    "writ-" + entVault,
			Metadata: map[string]string{
				"grant_id":    broker.NewGrantID(),
				"spiffe_id":   clientID.String(),
				"entitlement": entVault,
			},
		}, vaultRole)
		if err == nil && (s == nil || s.Auth == nil || s.Auth.ClientToken == "") {
			err = errors.New("vault returned no token")
		}
		return err
	}
}

// mkdir creates dir/name (best effort; a failure shows up on first use).
func mkdir(dir, name string) string {
	p := filepath.Join(dir, name)
	_ = os.MkdirAll(p, 0o700)
	return p
}
