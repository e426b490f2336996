package spiffe

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Source supplies the current X509-SVID and the X.509 trust bundles. Its
// getters are called on every TLS handshake and must be safe for concurrent
// use. The caller must Close a source when done with it.
type Source interface {
	x509svid.Source
	x509bundle.Source
	// Close releases the source's resources (a Workload API connection, a
	// file-polling goroutine).
	Close() error
}

var _ Source = (*workloadapi.X509Source)(nil)

// NewWorkloadSource connects to the SPIFFE Workload API at socket (for
// example "unix:///run/spire/agent.sock") and blocks until the first X509-SVID
// and bundle arrive or ctx is done; pass a ctx with a deadline so a missing
// agent fails startup instead of hanging. After that the source follows the
// agent's rotations in the background until Close; ctx does not bound it.
//
// socket must be given explicitly: the SPIFFE_ENDPOINT_SOCKET environment
// variable is never consulted here. An empty socket returns ErrConfig.
func NewWorkloadSource(ctx context.Context, socket string) (Source, error) {
	if socket == "" {
		return nil, fmt.Errorf("spiffe: workload API socket: empty address: %w", ErrConfig)
	}
	if _, err := workloadapi.TargetFromAddress(socket); err != nil {
		return nil, fmt.Errorf("spiffe: workload API socket %q: %w: %w", socket, ErrConfig, err)
	}
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(socket)))
	if err != nil {
		return nil, fmt.Errorf("spiffe: fetch X509-SVID from workload API %s: %w", socket, err)
	}
	return src, nil
}
