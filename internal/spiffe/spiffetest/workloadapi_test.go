package spiffetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
)

func TestWorkloadAPI_FetchX509SVID(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	id := spiffeid.RequireFromPath(td, "/workload")
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(id, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	api := spiffetest.NewWorkloadAPI(t)
	api.SetX509SVID(svid, ca.Bundle())

	conn, err := grpc.NewClient(api.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s) err = %v", api.Addr(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := workload.NewSpiffeWorkloadAPIClient(conn)

	tests := []struct {
		name     string
		md       metadata.MD
		wantCode codes.Code
	}{
		{"security header present", metadata.Pairs("workload.spiffe.io", "true"), codes.OK},
		{"security header missing", nil, codes.InvalidArgument},
		{"security header false", metadata.Pairs("workload.spiffe.io", "false"), codes.InvalidArgument},
	}
	rejected := 0
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if tt.md != nil {
			ctx = metadata.NewOutgoingContext(ctx, tt.md)
		}
		stream, err := client.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		if err == nil {
			var resp *workload.X509SVIDResponse
			resp, err = stream.Recv()
			if err == nil && (len(resp.Svids) != 1 || resp.Svids[0].SpiffeId != id.String()) {
				t.Errorf("%s: FetchX509SVID() response = %v, want one SVID for %q", tt.name, resp, id)
			}
		}
		cancel()
		if got := status.Code(err); got != tt.wantCode {
			t.Errorf("%s: FetchX509SVID() code = %v, want %v (err %v)", tt.name, got, tt.wantCode, err)
		}
		if tt.wantCode != codes.OK {
			rejected++
		}
	}
	if got := api.RejectedCalls(); got != rejected {
		t.Errorf("RejectedCalls() = %d, want %d", got, rejected)
	}
}
