// Package spiffetest provides test doubles for SPIFFE infrastructure. It is
// importable only from _test.go files and other test packages.
package spiffetest

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// securityHeader is the metadata key every Workload API call must carry with
// the value "true", as the SPIFFE Workload API specification requires.
const securityHeader = "workload.spiffe.io"

// WorkloadAPI is a fake SPIFFE Workload API serving the FetchX509SVID stream
// on a unix socket. Like SPIRE's agent, it rejects calls without the
// "workload.spiffe.io: true" metadata with codes.InvalidArgument. Every other
// RPC returns codes.Unimplemented.
type WorkloadAPI struct {
	t        testing.TB
	addr     string
	rejected atomic.Int64

	mu      sync.Mutex
	current *workload.X509SVIDResponse
	streams map[chan *workload.X509SVIDResponse]struct{}
}

// NewWorkloadAPI starts a fake Workload API and stops it when t finishes.
// Streams opened before the first SetX509SVID wait for it.
func NewWorkloadAPI(t testing.TB) *WorkloadAPI {
	t.Helper()
	// A unix socket path is limited to about 104 bytes, which a t.TempDir()
	// named after a long subtest can exceed, so the socket gets a short
	// directory of its own.
	dir, err := os.MkdirTemp("", "writ-wl-")
	if err != nil {
		t.Fatalf("spiffetest: create socket directory: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "agent.sock")

	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("spiffetest: listen on %s: %v", path, err)
	}
	w := &WorkloadAPI{
		t:       t,
		addr:    "unix://" + path,
		streams: make(map[chan *workload.X509SVIDResponse]struct{}),
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, &workloadServer{api: w})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return w
}

// Addr returns the socket address in the form NewWorkloadSource accepts,
// "unix:///path/to/agent.sock".
func (w *WorkloadAPI) Addr() string { return w.addr }

// SetX509SVID makes svid and bundle the current X.509 context and pushes it
// to every open FetchX509SVID stream, as an agent does on rotation. Call it
// from the test's goroutine: it fails the test if svid cannot be marshaled.
func (w *WorkloadAPI) SetX509SVID(svid *x509svid.SVID, bundle *x509bundle.Bundle) {
	w.t.Helper()
	certs, key, err := svid.MarshalRaw()
	if err != nil {
		w.t.Fatalf("spiffetest: marshal SVID %q: %v", svid.ID, err)
	}
	var bundleDER []byte
	for _, c := range bundle.X509Authorities() {
		bundleDER = append(bundleDER, c.Raw...)
	}
	resp := &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId:    svid.ID.String(),
		X509Svid:    certs,
		X509SvidKey: key,
		Bundle:      bundleDER,
	}}}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.current = resp
	for ch := range w.streams {
		// Each stream holds at most one pending update: the newest wins.
		select {
		case <-ch:
		default:
		}
		ch <- resp
	}
}

// RejectedCalls returns how many calls were refused for lacking the
// security header.
func (w *WorkloadAPI) RejectedCalls() int { return int(w.rejected.Load()) }

func (w *WorkloadAPI) subscribe() (chan *workload.X509SVIDResponse, func()) {
	ch := make(chan *workload.X509SVIDResponse, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.current != nil {
		ch <- w.current
	}
	w.streams[ch] = struct{}{}
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.streams, ch)
	}
}

type workloadServer struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	api *WorkloadAPI
}

// FetchX509SVID streams the current X.509 context and every later one.
func (s *workloadServer) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get(securityHeader); len(v) != 1 || v[0] != "true" {
		s.api.rejected.Add(1)
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	ch, unsubscribe := s.api.subscribe()
	defer unsubscribe()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case resp := <-ch:
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}
