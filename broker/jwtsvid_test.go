package broker_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
	"github.com/writ-dev/writ/internal/store/boltstore"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// jwtAudience is the audience the broker's JWT-SVID listener requires.
const jwtAudience = "spiffe://example.org/writd"

// countingVerifier counts the tokens that reach the verifier.
type countingVerifier struct {
	broker.JWTSVIDVerifier
	calls atomic.Int64
}

func (c *countingVerifier) VerifyJWTSVID(ctx context.Context, token string) (spiffeid.ID, error) {
	c.calls.Add(1)
	return c.JWTSVIDVerifier.VerifyJWTSVID(ctx, token)
}

// fixedVerifier accepts every token as id: it stands in for a verifier
// whose source trusts a federated trust domain.
type fixedVerifier struct{ id spiffeid.ID }

func (f fixedVerifier) VerifyJWTSVID(context.Context, string) (spiffeid.ID, error) { return f.id, nil }

type jwtEnv struct {
	conn  *grpc.ClientConn
	store *boltstore.Store
}

// newJWTEnv starts a broker whose only listener is a JWT-SVID one wired as
// writd wires it: server-authenticated TLS with the broker's X.509-SVID,
// the JWT-SVID interceptors, the workload service and health. The client
// verifies the broker's SVID with the trust bundle and presents no
// certificate.
func newJWTEnv(t *testing.T, v broker.JWTSVIDVerifier) *jwtEnv {
	t.Helper()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("policy.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := audit.Verify(context.Background(), store); err != nil {
			t.Errorf("ledger does not verify after the test: %v", err)
		}
		_ = store.Close()
	})
	ledger, err := audit.New(audit.Config{Store: store, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Config{
		Policy:  pol,
		Issuers: map[approval.CredentialKind]broker.Issuer{approval.KindJWT: &fakeIssuer{}},
		Ledger:  ledger,
		// An operator on the mTLS listener is an ordinary workload here.
		Operators: []spiffeid.ID{orderAPI},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:       func() time.Time { return fixedNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(brokerID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(memSource{SVID: svid, Bundle: ca.Bundle()}))),
		grpc.ChainUnaryInterceptor(srv.JWTSVIDUnaryInterceptor(v)),
		grpc.ChainStreamInterceptor(srv.JWTSVIDStreamInterceptor(v)),
	)
	srv.RegisterWorkload(gs)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	cc, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(ca.Bundle(), tlsconfig.AuthorizeID(brokerID)))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &jwtEnv{conn: cc, store: store}
}

func withBearer(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func TestServer_JWTSVIDInterceptor(t *testing.T) {
	t.Parallel()
	trusted := spiffetest.NewJWTAuthority(t, td)
	untrusted := spiffetest.NewJWTAuthority(t, td)
	verifier, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{Bundles: trusted.Bundle(), TrustDomain: td, Audience: jwtAudience})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now() // go-spiffe checks expiry against the wall clock
	valid := spiffetest.JWTClaims{Subject: orderAPI.String(), Audience: []string{jwtAudience}, Expiry: now.Add(5 * time.Minute), IssuedAt: now}
	mint := func(a *spiffetest.JWTAuthority, f func(*spiffetest.JWTClaims)) string {
		c := valid
		if f != nil {
			f(&c)
		}
		return a.Mint(t, c)
	}

	tests := []struct {
		name      string
		verifier  broker.JWTSVIDVerifier // nil: the real verifier
		ctx       context.Context
		wantCode  codes.Code
		wantCalls int64 // tokens that reached the verifier
	}{
		{name: "valid JWT-SVID is the workload", ctx: withBearer(mint(trusted, nil)), wantCode: codes.OK, wantCalls: 1},
		{name: "no token", ctx: context.Background(), wantCode: codes.Unauthenticated},
		{name: "another scheme", ctx: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic "+mint(trusted, nil)), wantCode: codes.Unauthenticated},
		{name: "two authorization headers", ctx: metadata.AppendToOutgoingContext(withBearer(mint(trusted, nil)), "authorization", "Bearer x"), wantCode: codes.Unauthenticated},
		{name: "T37 token over 8 KiB is refused before parsing", ctx: withBearer(strings.Repeat("a", 8<<10+1)), wantCode: codes.Unauthenticated},
		{name: "wrong audience", ctx: withBearer(mint(trusted, func(c *spiffetest.JWTClaims) { c.Audience = []string{"spiffe://example.org/other"} })), wantCode: codes.Unauthenticated, wantCalls: 1},
		{name: "expired", ctx: withBearer(mint(trusted, func(c *spiffetest.JWTClaims) { c.Expiry = now.Add(-5 * time.Minute) })), wantCode: codes.Unauthenticated, wantCalls: 1},
		{name: "signed by a key outside the bundle", ctx: withBearer(mint(untrusted, nil)), wantCode: codes.Unauthenticated, wantCalls: 1},
		{name: "foreign trust domain", ctx: withBearer(mint(trusted, func(c *spiffetest.JWTClaims) { c.Subject = "spiffe://foreign.example/api" })), wantCode: codes.Unauthenticated, wantCalls: 1},
		// The SPIFFE ID rule whose X.509 form crashed writd serve was
		// accepted in a JWT-SVID (X509-SVID §3.1, JWT-SVID §3.1).
		{name: "subject is the trust domain's root ID", ctx: withBearer(mint(trusted, func(c *spiffetest.JWTClaims) { c.Subject = "spiffe://" + td.Name() })), wantCode: codes.Unauthenticated, wantCalls: 1},
		{name: "subject with an ANSI escape", ctx: withBearer(mint(trusted, func(c *spiffetest.JWTClaims) { c.Subject = orderAPI.String() + "\x1b[2J" })), wantCode: codes.Unauthenticated, wantCalls: 1},
		{name: "JWT-SVID §2 extra header", ctx: withBearer(trusted.MintRaw(t, map[string]any{"alg": "ES256", "kid": trusted.KeyID(), "jku": "https://evil.example/keys"},
			map[string]any{"sub": orderAPI.String(), "aud": jwtAudience, "exp": now.Add(time.Minute).Unix()})), wantCode: codes.Unauthenticated, wantCalls: 1},
		{
			name:     "verifier accepting a foreign trust domain is overruled by the policy",
			verifier: fixedVerifier{id: spiffeid.RequireFromString("spiffe://foreign.example/ns/orders/api")},
			ctx:      withBearer("anything"),
			wantCode: codes.Unauthenticated,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := &countingVerifier{JWTSVIDVerifier: verifier}
			if tt.verifier != nil {
				v.JWTSVIDVerifier = tt.verifier
			}
			e := newJWTEnv(t, v)
			resp, err := brokerv1.NewBrokerServiceClient(e.conn).IssueCredential(tt.ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("IssueCredential() code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.verifier == nil {
				if got := v.calls.Load(); got != tt.wantCalls {
					t.Errorf("verifier called %d times, want %d", got, tt.wantCalls)
				}
			}
			entries := ledgerEntries(t, e.store)
			if tt.wantCode != codes.OK {
				if len(entries) != 0 {
					t.Errorf("unauthenticated call left %d ledger records, want none", len(entries))
				}
				return
			}
			if resp.GetCredential().GetSecret() == "" {
				t.Error("IssueCredential() returned no credential")
			}
			if len(entries) != 1 || entries[0].Action != "grant" || entries[0].Actor != orderAPI.String() || entries[0].Subject != orderAPI.String() {
				t.Errorf("ledger = %+v, want one grant to %s", entries, orderAPI)
			}
		})
	}
}

// TestServer_JWTSVIDListener covers what else is and is not served where
// callers authenticate with JWT-SVIDs.
func TestServer_JWTSVIDListener(t *testing.T) {
	t.Parallel()
	a := spiffetest.NewJWTAuthority(t, td)
	v, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{Bundles: a.Bundle(), TrustDomain: td, Audience: jwtAudience})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// orderAPI is an operator over mTLS: with a bearer token it is not.
	token := a.Mint(t, spiffetest.JWTClaims{Subject: orderAPI.String(), Audience: []string{jwtAudience}, Expiry: now.Add(5 * time.Minute)})
	e := newJWTEnv(t, v)

	t.Run("health needs no token", func(t *testing.T) {
		if _, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("Check() err = %v, want nil", err)
		}
	})
	t.Run("admin API is not served", func(t *testing.T) {
		_, err := adminv1.NewAdminServiceClient(e.conn).ListEntitlements(withBearer(token), &adminv1.ListEntitlementsRequest{})
		if got := status.Code(err); got != codes.Unimplemented {
			t.Errorf("ListEntitlements() code = %v (%v), want Unimplemented", got, err)
		}
	})
	t.Run("stream without a token", func(t *testing.T) {
		st, err := brokerv1.NewBrokerServiceClient(e.conn).WatchRequest(context.Background(), &brokerv1.WatchRequestRequest{RequestId: "r_x"})
		if err == nil {
			_, err = st.Recv()
		}
		if got := status.Code(err); got != codes.Unauthenticated {
			t.Errorf("WatchRequest() code = %v (%v), want Unauthenticated", got, err)
		}
	})
	t.Run("stream with a token reaches the handler as the workload", func(t *testing.T) {
		st, err := brokerv1.NewBrokerServiceClient(e.conn).WatchRequest(withBearer(token), &brokerv1.WatchRequestRequest{RequestId: "r_x"})
		if err == nil {
			_, err = st.Recv()
		}
		// This broker has no approval service: the handler, having seen a
		// workload, says so.
		if got := status.Code(err); got != codes.FailedPrecondition {
			t.Errorf("WatchRequest() code = %v (%v), want FailedPrecondition from the handler", got, err)
		}
	})
}

func TestServer_JWTSVIDInterceptor_NilVerifier(t *testing.T) {
	t.Parallel()
	e := newJWTEnv(t, nil)
	_, err := brokerv1.NewBrokerServiceClient(e.conn).IssueCredential(withBearer("x"), &brokerv1.IssueCredentialRequest{Entitlement: "orders"})
	if got := status.Code(err); got != codes.Unauthenticated {
		t.Errorf("IssueCredential() code = %v (%v), want Unauthenticated", got, err)
	}
}

func ledgerEntries(t *testing.T, store *boltstore.Store) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	err := store.ScanRecords(context.Background(), func(_ uint64, raw []byte) error {
		en, err := audit.Decode(raw)
		out = append(out, en)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
