package spiffe_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
	"github.com/writ-dev/writ/internal/testenv"
)

func mustNewWorkloadSource(t *testing.T, addr string) spiffe.Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	src, err := spiffe.NewWorkloadSource(ctx, addr)
	if err != nil {
		t.Fatalf("NewWorkloadSource(%s) err = %v", addr, err)
	}
	t.Cleanup(func() {
		if err := src.Close(); err != nil {
			t.Errorf("Close() err = %v", err)
		}
	})
	return src
}

// TestNewWorkloadSource_Rotation serves an SVID from a fake Workload API,
// pushes a new one on the stream, and checks that new handshakes use it.
func TestNewWorkloadSource_Rotation(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	api := spiffetest.NewWorkloadAPI(t)
	first := issue(t, ca, serverID, devca.IssueOptions{})
	api.SetX509SVID(first, ca.Bundle())

	src := mustNewWorkloadSource(t, api.Addr())
	got, err := src.GetX509SVID()
	if err != nil {
		t.Fatalf("GetX509SVID() err = %v", err)
	}
	if got.ID != serverID || serialOf(got).Cmp(serialOf(first)) != 0 {
		t.Errorf("GetX509SVID() = %q serial %s, want %q serial %s", got.ID, serialOf(got), serverID, serialOf(first))
	}
	bundle, err := src.GetX509BundleForTrustDomain(testTD)
	if err != nil {
		t.Fatalf("GetX509BundleForTrustDomain(%q) err = %v", testTD, err)
	}
	if !bundle.Equal(ca.Bundle()) {
		t.Errorf("GetX509BundleForTrustDomain() returned a different bundle")
	}

	// The workload source serves a real mTLS server.
	ts := startServer(t, spiffe.ServerCredentials(src, tlsconfig.AuthorizeMemberOf(testTD)))
	var seen serialRecorder
	clientCreds := spiffe.ClientCredentials(newMemSource(issue(t, ca, clientID, devca.IssueOptions{}), ca.Bundle()),
		seen.wrap(tlsconfig.AuthorizeID(serverID)))
	if err := check(t, ts.addr, clientCreds); err != nil {
		t.Fatalf("Check() err = %v", err)
	}
	if got := seen.get(); got.Cmp(serialOf(first)) != 0 {
		t.Errorf("client saw server serial %s, want %s", got, serialOf(first))
	}

	second := issue(t, ca, serverID, devca.IssueOptions{})
	api.SetX509SVID(second, ca.Bundle())
	testenv.Eventually(t, 10*time.Second, "a handshake presenting the pushed SVID", func() bool {
		if err := check(t, ts.addr, clientCreds); err != nil {
			t.Fatalf("Check() during rotation err = %v", err)
		}
		return seen.get().Cmp(serialOf(second)) == 0
	})

	if n := api.RejectedCalls(); n != 0 {
		t.Errorf("RejectedCalls() = %d, want 0: the client must send the security header", n)
	}
}

func TestNewWorkloadSource_Errors(t *testing.T) {
	t.Parallel()
	silent := spiffetest.NewWorkloadAPI(t) // never given an SVID
	tests := []struct {
		name string
		addr string
		want error
	}{
		{"empty socket", "", spiffe.ErrConfig},
		{"malformed socket", "agent.sock", spiffe.ErrConfig},
		{"nothing listening", "unix://" + filepath.Join(t.TempDir(), "none.sock"), context.DeadlineExceeded},
		{"agent without an SVID for us", silent.Addr(), context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			src, err := spiffe.NewWorkloadSource(ctx, tt.addr)
			if !errors.Is(err, tt.want) {
				t.Errorf("NewWorkloadSource(%q) err = %v, want %v", tt.addr, err, tt.want)
			}
			if src != nil {
				t.Errorf("NewWorkloadSource(%q) returned a source with an error", tt.addr)
				_ = src.Close()
			}
		})
	}
}
