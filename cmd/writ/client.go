package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/spiffe"
)

// connFlags are how a command reaches the broker as a SPIFFE identity.
type connFlags struct {
	broker   string
	brokerID string
	svidDir  string
	cert     string
	key      string
	bundle   string
	socket   string
	timeout  time.Duration
}

func (f *connFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.broker, "broker", envOr("WRIT_BROKER", "127.0.0.1:8443"), "broker gRPC address (env WRIT_BROKER)")
	fl.StringVar(&f.brokerID, "broker-id", os.Getenv("WRIT_BROKER_ID"), "the broker's SPIFFE ID; the connection is refused if the server presents another (env WRIT_BROKER_ID)")
	fl.StringVar(&f.svidDir, "svid-dir", os.Getenv("WRIT_SVID_DIR"), "directory with svid.pem, svid_key.pem and bundle.pem (env WRIT_SVID_DIR)")
	fl.StringVar(&f.cert, "svid", "", "X.509-SVID certificate chain PEM file")
	fl.StringVar(&f.key, "svid-key", "", "X.509-SVID private key PEM file")
	fl.StringVar(&f.bundle, "bundle", "", "trust bundle PEM file")
	fl.StringVar(&f.socket, "socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "SPIFFE Workload API socket, e.g. unix:///run/spire/agent.sock (env SPIFFE_ENDPOINT_SOCKET)")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// errUsage marks a mistake in how writ was called.
var errUsage = errors.New("usage")

// dial connects to the broker with mutual TLS. The caller must call the
// returned close function.
func (f *connFlags) dial(ctx context.Context) (*grpc.ClientConn, func(), error) {
	if f.brokerID == "" {
		return nil, nil, fmt.Errorf("--broker-id is required (the broker's SPIFFE ID, e.g. spiffe://writ.dev/writd): %w", errUsage)
	}
	serverID, err := spiffeid.FromString(f.brokerID)
	if err != nil {
		return nil, nil, fmt.Errorf("--broker-id %q: %v: %w", f.brokerID, err, errUsage)
	}
	src, err := f.source(ctx)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(f.broker, grpc.WithTransportCredentials(spiffe.ClientCredentials(src, tlsconfig.AuthorizeID(serverID))))
	if err != nil {
		_ = src.Close()
		return nil, nil, fmt.Errorf("connect to %s: %w", f.broker, err)
	}
	return conn, func() { _ = conn.Close(); _ = src.Close() }, nil
}

func (f *connFlags) source(ctx context.Context) (spiffe.Source, error) {
	cert, key, bundle := f.cert, f.key, f.bundle
	if f.svidDir != "" {
		cert, key, bundle = filepath.Join(f.svidDir, "svid.pem"), filepath.Join(f.svidDir, "svid_key.pem"), filepath.Join(f.svidDir, "bundle.pem")
	}
	if cert != "" || key != "" || bundle != "" {
		if cert == "" || key == "" || bundle == "" {
			return nil, fmt.Errorf("--svid, --svid-key and --bundle go together (or use --svid-dir): %w", errUsage)
		}
		return spiffe.NewFileSource(ctx, spiffe.FileConfig{CertFile: cert, KeyFile: key, BundleFile: bundle})
	}
	if f.socket != "" {
		return spiffe.NewWorkloadSource(ctx, f.socket)
	}
	return nil, fmt.Errorf("no SVID: use --svid-dir, --svid/--svid-key/--bundle, or --socket (SPIFFE_ENDPOINT_SOCKET): %w", errUsage)
}

// Exit codes, documented in the README.
const (
	exitError       = 1
	exitUsage       = 2
	exitDenied      = 3
	exitNotFound    = 4
	exitUnavailable = 5
	exitRejected    = 6
)

// exitCode maps an error to writ's exit code.
func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return exitUsage
	}
	if errors.Is(err, errVerify) {
		return exitError
	}
	s, ok := status.FromError(err)
	if !ok {
		return exitError
	}
	switch s.Code() {
	case codes.PermissionDenied, codes.Unauthenticated:
		return exitDenied
	case codes.NotFound:
		return exitNotFound
	case codes.Unavailable, codes.DeadlineExceeded:
		return exitUnavailable
	case codes.InvalidArgument, codes.FailedPrecondition:
		return exitRejected
	default:
		return exitError
	}
}

// friendly turns a gRPC status into a message a person can act on.
func friendly(err error) string {
	s, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch s.Code() {
	case codes.PermissionDenied:
		return "permission denied: " + s.Message()
	case codes.Unauthenticated:
		return "not authenticated: " + s.Message()
	case codes.NotFound:
		return "not found: " + s.Message()
	case codes.InvalidArgument:
		return "invalid request: " + s.Message()
	case codes.FailedPrecondition:
		return "cannot do that now: " + s.Message()
	case codes.Unavailable:
		return "broker unavailable: " + s.Message()
	case codes.DeadlineExceeded:
		return "timed out: " + s.Message()
	default:
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
}
