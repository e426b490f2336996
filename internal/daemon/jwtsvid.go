package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/spiffe"
)

// JWTSVIDConfig configures the JWT-SVID listener, for workloads behind
// TLS-terminating proxies: they send a JWT-SVID as a bearer token over TLS
// in which the broker presents its X.509-SVID.
type JWTSVIDConfig struct {
	// Listen is the TLS address (the broker presents its X.509-SVID).
	Listen string `yaml:"listen"`
	// Audience is the "aud" every JWT-SVID must carry, for example the
	// broker's SPIFFE ID.
	Audience string `yaml:"audience"`
}

// validateJWTSVID checks jwt_svid and where its keys come from
// (svid.jwt_bundle_file with PEM files, the agent with a socket).
func (c Config) validateJWTSVID() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	j, file := c.JWTSVID, c.SVID.JWTBundleFile
	if j == nil {
		if file != "" {
			bad("svid.jwt_bundle_file", "is used only by jwt_svid; configure jwt_svid or remove it")
		}
		return errs
	}
	if _, _, err := net.SplitHostPort(j.Listen); err != nil {
		bad("jwt_svid.listen", "%q is not host:port", j.Listen)
	}
	switch {
	case j.Audience == "":
		bad("jwt_svid.audience", "is required: the \"aud\" JWT-SVIDs must carry, e.g. the broker's SPIFFE ID")
	case strings.TrimSpace(j.Audience) != j.Audience || strings.ContainsAny(j.Audience, " \t\n"):
		bad("jwt_svid.audience", "%q must not contain spaces", j.Audience)
	}
	switch {
	case c.SVID.WorkloadAPISocket != "" && file != "":
		bad("svid.jwt_bundle_file", "is for PEM files; with workload_api_socket the agent serves the JWT bundle")
	case c.SVID.WorkloadAPISocket != "":
	case file == "":
		bad("svid.jwt_bundle_file", "is required with jwt_svid and SVID files: the trust domain's JWT-SVID keys (spire-server bundle show -format spiffe)")
	default:
		if _, err := os.Stat(file); err != nil {
			bad("svid.jwt_bundle_file", "%v", err)
		}
	}
	return errs
}

// startJWTSVID opens the JWT-SVID listener when configured: TLS with the
// broker's X.509-SVID from src, the workload service and health, callers
// authenticated by the JWT-SVID interceptors. Its bundle source is closed
// with the other components; Shutdown stops the server.
func (m *Daemon) startJWTSVID(ctx context.Context, srv *broker.Server, src spiffe.Source) error {
	c := m.cfg.JWTSVID
	if c == nil {
		return nil
	}
	td, err := spiffeid.TrustDomainFromString(srv.Policy().TrustDomain)
	if err != nil {
		return fmt.Errorf("jwt_svid: policy trust_domain: %w", err)
	}
	bundles, err := m.jwtBundleSource(ctx, td)
	if err != nil {
		return err
	}
	m.closer = append(m.closer, bundles.Close)
	verifier, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{Bundles: bundles, TrustDomain: td, Audience: c.Audience})
	if err != nil {
		return fmt.Errorf("jwt_svid: %w", err)
	}

	gs := grpc.NewServer(append(serverLimits(),
		grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(src))),
		grpc.ChainUnaryInterceptor(srv.JWTSVIDUnaryInterceptor(verifier)),
		grpc.ChainStreamInterceptor(srv.JWTSVIDStreamInterceptor(verifier)),
	)...)
	srv.RegisterWorkload(gs)
	healthpb.RegisterHealthServer(gs, m.health)
	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("jwt_svid.listen: %w", err)
	}
	m.jwtSVIDServer = gs
	m.JWTSVIDAddr = lis.Addr()
	go func() {
		if err := gs.Serve(lis); err != nil {
			m.log.Error("jwt-svid server stopped", "error", err)
		}
	}()
	return nil
}

// jwtBundleSource returns where JWT-SVID keys come from: the Workload API
// when the broker's SVID does, else svid.jwt_bundle_file.
func (m *Daemon) jwtBundleSource(ctx context.Context, td spiffeid.TrustDomain) (spiffe.JWTBundleSource, error) {
	if s := m.cfg.SVID.WorkloadAPISocket; s != "" {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		b, err := spiffe.NewWorkloadJWTBundleSource(wctx, s)
		if err != nil {
			return nil, fmt.Errorf("jwt_svid: svid.workload_api_socket %s: %w", s, err)
		}
		return b, nil
	}
	b, err := spiffe.NewJWTBundleFileSource(ctx, spiffe.JWTBundleFileConfig{
		Path:        m.cfg.SVID.JWTBundleFile,
		TrustDomain: td,
		Interval:    m.cfg.SVID.ReloadInterval,
		Logger:      m.log,
	})
	if err != nil {
		return nil, fmt.Errorf("svid.jwt_bundle_file: %w", err)
	}
	return b, nil
}
