package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

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
// broker's X.509-SVID, the workload service and health, callers
// authenticated by the JWT-SVID interceptors. Its bundle source is closed
// with the other components; Shutdown stops the server.
func (d *Daemon) startJWTSVID(ctx context.Context, c *components) error {
	jc := d.cfg.JWTSVID
	if jc == nil {
		return nil
	}
	bundles, err := d.jwtBundleSource(ctx, c.td)
	if err != nil {
		return err
	}
	d.life.addCloser("jwt bundle source", bundles.Close)
	verifier, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{Bundles: bundles, TrustDomain: c.td, Audience: jc.Audience})
	if err != nil {
		return fmt.Errorf("jwt_svid: %w", err)
	}
	gs := d.newGRPCServer(spiffe.ServerTLSCredentials(c.src, spiffe.WithPanicHandler(c.srv.HandshakePanic)),
		c.srv.JWTSVIDUnaryInterceptor(verifier), c.srv.JWTSVIDStreamInterceptor(verifier))
	c.srv.RegisterWorkload(gs)
	healthpb.RegisterHealthServer(gs, d.health)
	lis, err := net.Listen("tcp", jc.Listen)
	if err != nil {
		return fmt.Errorf("jwt_svid.listen: %w", err)
	}
	d.JWTSVIDAddr = lis.Addr()
	d.life.serveGRPC("jwt-svid", gs, lis)
	return nil
}

// jwtBundleSource returns where JWT-SVID keys come from: the Workload API
// when the broker's SVID does, else svid.jwt_bundle_file.
func (d *Daemon) jwtBundleSource(ctx context.Context, td spiffeid.TrustDomain) (spiffe.JWTBundleSource, error) {
	if s := d.cfg.SVID.WorkloadAPISocket; s != "" {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		b, err := spiffe.NewWorkloadJWTBundleSource(wctx, s)
		if err != nil {
			return nil, fmt.Errorf("jwt_svid: svid.workload_api_socket %s: %w", s, err)
		}
		return b, nil
	}
	b, err := spiffe.NewJWTBundleFileSource(ctx, spiffe.JWTBundleFileConfig{
		Path:        d.cfg.SVID.JWTBundleFile,
		TrustDomain: td,
		Interval:    d.cfg.SVID.ReloadInterval,
		Logger:      d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("svid.jwt_bundle_file: %w", err)
	}
	return b, nil
}
