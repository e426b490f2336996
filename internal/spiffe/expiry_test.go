package spiffe_test

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/testenv"
)

// TestServerCredentials_ClosesOnPeerExpiry checks that a busy connection
// does not outlive the client SVID it was made with: a client that keeps
// its expired SVID loses access when it expires, and one whose source
// rotated reconnects with the new SVID and keeps access.
func TestServerCredentials_ClosesOnPeerExpiry(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	bundle := ca.Bundle()
	serverSrc := newMemSource(issue(t, ca, serverID, devca.IssueOptions{}), bundle)
	var seen serialRecorder
	ts := startServer(t, spiffe.ServerCredentials(serverSrc, seen.wrap(tlsconfig.AuthorizeMemberOf(testTD))))

	shortLived := func() devca.IssueOptions {
		now := time.Now()
		return devca.IssueOptions{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(2 * time.Second)}
	}
	tests := []struct {
		name   string
		rotate bool // the client's source gets a fresh SVID before the first expires
	}{
		{name: "client keeping an expired SVID loses access on its open connection"},
		{name: "client with a rotated SVID reconnects and keeps access", rotate: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			first := issue(t, ca, clientID, shortLived())
			src := newMemSource(first, bundle)
			conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(spiffe.ClientCredentials(src, tlsconfig.AuthorizeID(serverID))))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			hc := healthpb.NewHealthClient(conn)
			call := func() error {
				ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				defer cancel()
				_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				return err
			}
			if err := call(); err != nil {
				t.Fatalf("Check() with a valid SVID err = %v", err)
			}
			if tt.rotate {
				src.svid.Store(issue(t, ca, clientID, devca.IssueOptions{}))
			}
			// Keep the connection busy until the first SVID's expiry has
			// taken effect. The expiry is on the wall clock: go-spiffe
			// verifies a peer's certificate against time.Now (there is no
			// clock to inject into it), so this polls, on the outcome.
			expiry := first.Certificates[0].NotAfter
			var last error
			testenv.Eventually(t, time.Until(expiry)+2*rpcTimeout, "the first SVID's expiry to take effect", func() bool {
				last = call()
				if !time.Now().After(expiry) {
					return false
				}
				if tt.rotate {
					return last == nil && seen.get().Cmp(serialOf(first)) != 0
				}
				return last != nil
			})
			// A call may race the close at expiry; the next ones see the
			// settled state.
			testenv.Eventually(t, rpcTimeout, "the connection to settle after expiry", func() bool {
				last = call()
				return tt.rotate == (last == nil)
			})
			if tt.rotate {
				if got := seen.get(); got.Cmp(serialOf(first)) == 0 {
					t.Errorf("server still sees the first SVID (serial %s) after rotation", got)
				}
				return
			}
			if got := status.Code(last); got != codes.Unavailable {
				t.Errorf("Check() after the SVID expired = %v, want Unavailable (handshake refused)", last)
			}
		})
	}
}
