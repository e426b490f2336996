package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// adminFlags are how a person reaches the admin API: TLS to the admin
// listener, the broker recognised by its SPIFFE ID and trust bundle, and an
// ID token from `writ login`.
type adminFlags struct {
	profile  string
	admin    string
	brokerID string
	bundle   string
	timeout  time.Duration
}

func (f *adminFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.profile, "profile", envOr("WRIT_PROFILE", "default"), "login profile to use (env WRIT_PROFILE)")
	fl.StringVar(&f.admin, "admin", os.Getenv("WRIT_ADMIN"), "admin API address (env WRIT_ADMIN; default from the profile, else 127.0.0.1:8444)")
	fl.StringVar(&f.brokerID, "broker-id", os.Getenv("WRIT_BROKER_ID"), "the broker's SPIFFE ID (env WRIT_BROKER_ID; default from the profile)")
	fl.StringVar(&f.bundle, "bundle", os.Getenv("WRIT_BUNDLE"), "trust bundle PEM that signs the broker's SVID (env WRIT_BUNDLE; default from the profile)")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
}

// resolve fills unset flags from the profile.
func (f *adminFlags) resolve() (profile, error) {
	p, err := loadProfile(f.profile)
	if err != nil {
		return profile{}, err
	}
	if f.admin != "" {
		p.Admin = f.admin
	}
	if p.Admin == "" {
		p.Admin = "127.0.0.1:8444"
	}
	if f.brokerID != "" {
		p.BrokerID = f.brokerID
	}
	if f.bundle != "" {
		p.Bundle = f.bundle
	}
	if t := os.Getenv("WRIT_TOKEN"); t != "" {
		p.Token = t
	}
	return p, nil
}

// call checks --output, connects to the admin API as the logged-in person
// and runs fn with a deadline of --timeout.
func (f *adminFlags) call(cmd *cobra.Command, output string, fn func(ctx context.Context, c adminv1.AdminServiceClient) error) error {
	if err := checkOutput(output); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	c, done, err := f.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	return fn(ctx, c)
}

// dial connects to the admin API as the logged-in person.
func (f *adminFlags) dial(ctx context.Context) (adminv1.AdminServiceClient, func(), error) {
	p, err := f.resolve()
	if err != nil {
		return nil, nil, err
	}
	if p.Token == "" {
		return nil, nil, fmt.Errorf("not logged in (profile %q): run `writ login` first: %w", f.profile, errUsage)
	}
	if os.Getenv("WRIT_TOKEN") == "" {
		if p, err = renewIfDue(ctx, f.profile, p); err != nil {
			return nil, nil, err
		}
	}
	cc, err := dialAdmin(p)
	if err != nil {
		return nil, nil, err
	}
	return adminv1.NewAdminServiceClient(cc), func() { _ = cc.Close() }, nil
}

func dialAdmin(p profile) (*grpc.ClientConn, error) {
	if p.BrokerID == "" || p.Bundle == "" {
		return nil, fmt.Errorf("--broker-id and --bundle are needed (once, at `writ login`) to recognise the broker: %w", errUsage)
	}
	id, err := spiffeid.FromString(p.BrokerID)
	if err != nil {
		return nil, fmt.Errorf("--broker-id %q: %v: %w", p.BrokerID, err, errUsage)
	}
	bundle, err := x509bundle.Load(id.TrustDomain(), p.Bundle)
	if err != nil {
		return nil, fmt.Errorf("--bundle: %w", err)
	}
	tlsConf := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(id))
	return grpc.NewClient(p.Admin,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
		grpc.WithPerRPCCredentials(bearer(p.Token)))
}

// bearer sends the ID token on every call; only over TLS.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }
