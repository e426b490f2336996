package spiffe_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
)

var (
	testTD   = spiffeid.RequireTrustDomainFromString("example.org")
	serverID = spiffeid.RequireFromString("spiffe://example.org/writd")
	clientID = spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/api")
	otherID  = spiffeid.RequireFromString("spiffe://example.org/ns/dev/sa/intruder")
)

// rpcTimeout bounds every test RPC so a wedged handshake fails the test
// instead of hanging it.
const rpcTimeout = 10 * time.Second

// memSource is an in-memory spiffe.Source whose SVID can be swapped, to
// observe that credentials read the source on every handshake.
type memSource struct {
	svid   atomic.Pointer[x509svid.SVID]
	bundle *x509bundle.Bundle
}

var _ spiffe.Source = (*memSource)(nil)

func newMemSource(svid *x509svid.SVID, bundle *x509bundle.Bundle) *memSource {
	s := &memSource{bundle: bundle}
	s.svid.Store(svid)
	return s
}

func (s *memSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid.Load(), nil }

func (s *memSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle.GetX509BundleForTrustDomain(td)
}

func (s *memSource) Close() error { return nil }

// newCA returns a development CA on the wall clock: TLS handshakes check
// validity against the real time, not an injected one.
func newCA(t *testing.T) *devca.CA {
	t.Helper()
	ca, err := devca.New(testTD)
	if err != nil {
		t.Fatalf("devca.New() err = %v", err)
	}
	return ca
}

func issue(t *testing.T, ca *devca.CA, id spiffeid.ID, opts devca.IssueOptions) *x509svid.SVID {
	t.Helper()
	svid, err := ca.Issue(id, opts)
	if err != nil {
		t.Fatalf("Issue(%q) err = %v", id, err)
	}
	return svid
}

func serialOf(svid *x509svid.SVID) *big.Int { return svid.Certificates[0].SerialNumber }

// serialRecorder wraps an authorizer and remembers the serial number of the
// last peer leaf it was shown, which is how a test sees which SVID the other
// side presented in a handshake.
type serialRecorder struct {
	last atomic.Pointer[big.Int]
}

func (r *serialRecorder) wrap(next tlsconfig.Authorizer) tlsconfig.Authorizer {
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if len(chains) > 0 && len(chains[0]) > 0 {
			r.last.Store(chains[0][0].SerialNumber)
		}
		return next(id, chains)
	}
}

func (r *serialRecorder) get() *big.Int { return r.last.Load() }

// testServer is a gRPC health server on loopback TCP that counts how many
// calls reached a handler and which peer ID the last one saw.
type testServer struct {
	addr    string
	handled atomic.Int64
	peer    atomic.Pointer[spiffeid.ID]
}

func startServer(t *testing.T, creds credentials.TransportCredentials) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ts := &testServer{addr: lis.Addr().String()}
	srv := grpc.NewServer(
		grpc.Creds(creds),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			ts.handled.Add(1)
			if id, ok := spiffe.PeerID(ctx); ok {
				ts.peer.Store(&id)
			}
			return handler(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return ts
}

// check makes one health-check RPC on a new connection, so every call is a
// fresh TLS handshake.
func check(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s) err = %v", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// syncBuffer is a bytes.Buffer safe for the polling goroutine's logger to
// write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
