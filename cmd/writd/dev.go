package main

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/writ-dev/writ/internal/daemon"
	"github.com/writ-dev/writ/internal/oidc"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/spiffe/devca"
)

const devTrustDomain = "writ.dev"

// devPolicy is written once; edits to writ-dev/policy.yaml are kept.
const devPolicy = `# Writ demo policy. Edit it and restart writd dev.
version: 1
trust_domain: writ.dev
entitlements:
  - name: demo
    owner: platform-team
    purpose: Demo JWT for the demo workload
    max_ttl: 15m
    requesters:
      - spiffe://writ.dev/demo
    issuer:
      jwt:
        audience: [demo-api]
    approval:
      mode: auto
  - name: demo-short
    owner: platform-team
    purpose: Demo of a CEL condition - at most 5 minutes
    max_ttl: 1h
    requesters:
      - spiffe://writ.dev/demo
    issuer:
      jwt:
        audience: [demo-api]
    approval:
      mode: auto
      condition: request.ttl <= duration("5m")
  - name: demo-approved
    owner: platform-team
    purpose: Demo of human approval - two people from group dba
    max_ttl: 10m
    requesters:
      - spiffe://writ.dev/demo
    issuer:
      jwt:
        audience: [demo-api]
    approval:
      mode: approvers
      stages:
        - {groups: [dba], min: 2}
      window: 1h
      reason: {required: true}
    break_glass:
      allowed: [spiffe://writ.dev/demo, sre]
      max_ttl: 2m
      review_within: 1h
      reviewers: {groups: [security], min: 1}
`

var devNext = template.Must(template.New("next").Parse(`
Writ dev broker is running (trust domain {{.TD}}; state in {{.Dir}}, kept after exit).

Try, in another terminal:

  # a JWT for the demo workload (uses its SVID files)
  go run ./cmd/writ credential --entitlement demo {{.Flags "demo"}}

  # the same as JSON, with a shorter TTL
  go run ./cmd/writ credential --entitlement demo --ttl 2m --output json {{.Flags "demo"}}

  # a workload that is not eligible is refused (PermissionDenied, recorded)
  go run ./cmd/writ credential --entitlement demo {{.Flags "outsider"}}

  # the public keys relying parties verify with
  go run ./cmd/writ jwks --url http://{{.HTTP}}/.well-known/jwks.json

  # the entitlements in force (as the operator)
  go run ./cmd/writ entitlements {{.Flags "operator"}}

  # human approval: the workload asks, alice and bob (group dba) approve
  export WRIT_ADMIN={{.Admin}} WRIT_BROKER_ID=spiffe://{{.TD}}/writd WRIT_BUNDLE={{.Dir}}/bundle.pem WRIT_DEV_URL=http://{{.HTTP}}
  go run ./cmd/writ request --entitlement demo-approved --duration 30m --reason "investigate orders lag" {{.Flags "demo"}}
  go run ./cmd/writ login --dev alice --groups dba --profile alice
  go run ./cmd/writ login --dev bob --groups dba --profile bob
  go run ./cmd/writ requests list --pending --profile alice
  go run ./cmd/writ approve REQUEST_ID --comment "ok" --profile alice
  go run ./cmd/writ approve REQUEST_ID --comment "ok" --profile bob
  go run ./cmd/writ credential --entitlement demo-approved {{.Flags "demo"}}
  go run ./cmd/writ revoke REQUEST_ID --reason "done" --profile alice

  # break-glass: at once, capped at 2m, alerted, and reviewed afterwards by security
  go run ./cmd/writ breakglass --as-workload --entitlement demo-approved --reason "orders down" --incident INC-1 {{.Flags "demo"}}
  go run ./cmd/writ login --dev carol --groups security --profile carol
  go run ./cmd/writ reviews list --open --profile carol
  go run ./cmd/writ reviews show BREAKGLASS_ID --profile carol
  go run ./cmd/writ review BREAKGLASS_ID --outcome justified --notes "confirmed INC-1" --profile carol

  # after Ctrl-C: check the ledger's hash chain offline
  go run ./cmd/writ audit verify --data-dir {{.Dir}}

`))

type devInfo struct {
	TD, Dir, GRPC, HTTP, Admin string
}

// Flags returns the writ flags that act as the named dev identity.
func (d devInfo) Flags(who string) string {
	return fmt.Sprintf("--broker %s --broker-id spiffe://%s/writd --svid-dir %s", d.GRPC, d.TD, filepath.Join(d.Dir, who))
}

func devCmd(stdout, logOut io.Writer) *cobra.Command {
	var dir, listen, httpListen, adminListen string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a self-contained demo broker: dev CA, demo SVIDs, demo policy, local JWT issuer",
		Long: "dev runs a broker with no external services. It creates a development SPIFFE CA and\n" +
			"SVIDs for the broker and demo identities, a demo policy, and a local JWT issuer.\n" +
			"Never use it in production: the CA key lies in the data directory.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := prepareDev(dir, time.Now)
			if err != nil {
				return err
			}
			// Bind first, so that port 0 works and the JWT issuer names the
			// real address.
			glis, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			hlis, err := net.Listen("tcp", httpListen)
			if err != nil {
				_ = glis.Close()
				return fmt.Errorf("--http-listen: %w", err)
			}
			alis, err := net.Listen("tcp", adminListen)
			if err != nil {
				_, _ = glis.Close(), hlis.Close()
				return fmt.Errorf("--admin-listen: %w", err)
			}
			closeAll := func() { _, _, _ = glis.Close(), hlis.Close(), alis.Close() }
			cfg.Listen, cfg.HTTP.Listen, cfg.Admin.Listen = glis.Addr().String(), hlis.Addr().String(), alis.Addr().String()
			cfg.JWT.Issuer = "http://" + hlis.Addr().String()
			// The dev-only OIDC issuer: anyone can get a token for any name.
			// It exists only here, never in writd serve.
			dev, err := oidc.NewDevIssuer(cfg.JWT.Issuer+"/dev-oidc", time.Now)
			if err != nil {
				closeAll()
				return err
			}
			cfg.OIDC = &daemon.OIDCConfig{Issuer: cfg.JWT.Issuer + "/dev-oidc", Audience: oidc.DevAudience}
			if err := cfg.Validate(); err != nil {
				closeAll()
				return err
			}
			m, err := daemon.New(cmd.Context(), cfg, daemon.Options{LogOutput: logOut, GRPCListener: glis, HTTPListener: hlis, AdminListener: alis, DevOIDC: dev})
			if err != nil {
				closeAll()
				return err
			}
			info := devInfo{TD: devTrustDomain, Dir: dir, GRPC: m.GRPCAddr.String(), HTTP: m.HTTPAddr.String(), Admin: m.AdminAddr.String()}
			if err := devNext.Execute(stdout, info); err != nil {
				return err
			}
			<-cmd.Context().Done()
			m.Shutdown()
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "data-dir", "./writ-dev", "where the dev CA, SVIDs, policy and ledger live")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8443", "gRPC address")
	cmd.Flags().StringVar(&httpListen, "http-listen", "127.0.0.1:8080", "HTTP address (JWKS, metrics, dev OIDC issuer)")
	cmd.Flags().StringVar(&adminListen, "admin-listen", "127.0.0.1:8444", "admin API address for people (TLS, OIDC tokens)")
	return cmd
}

// prepareDev creates or refreshes the dev CA, SVIDs and policy in dir and
// returns the configuration that serves them.
func prepareDev(dir string, now func() time.Time) (daemon.Config, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return daemon.Config{}, err
	}
	td := spiffeid.RequireTrustDomainFromString(devTrustDomain)
	ca, err := devca.LoadOrCreate(filepath.Join(dir, "ca"), td, now)
	if err != nil {
		return daemon.Config{}, fmt.Errorf("dev CA: %w", err)
	}
	var brokerFiles devca.Files
	for _, who := range []string{"writd", "demo", "outsider", "operator"} {
		id := spiffeid.RequireFromPath(td, "/"+who)
		svid, err := ca.Issue(id, devca.IssueOptions{})
		if err != nil {
			return daemon.Config{}, fmt.Errorf("dev SVID for %s: %w", id, err)
		}
		files, err := devca.WriteSVID(filepath.Join(dir, who), svid, ca.Bundle())
		if err != nil {
			return daemon.Config{}, err
		}
		if who == "writd" {
			brokerFiles = files
		}
	}
	// People verify the broker with the trust bundle.
	if err := os.WriteFile(filepath.Join(dir, "bundle.pem"), bundlePEM(ca), 0o644); err != nil {
		return daemon.Config{}, err
	}
	policyPath := filepath.Join(dir, "policy.yaml")
	if _, err := os.Stat(policyPath); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(policyPath, []byte(devPolicy), 0o600); err != nil {
			return daemon.Config{}, err
		}
	}
	cfg := daemon.DefaultConfig()
	cfg.SVID = daemon.SVIDConfig{CertFile: brokerFiles.Cert, KeyFile: brokerFiles.Key, BundleFile: brokerFiles.Bundle, ReloadInterval: 5 * time.Second}
	cfg.Policy = policyPath
	cfg.DataDir = dir
	cfg.Admin.Operators = []string{"spiffe://" + devTrustDomain + "/operator"}
	cfg.Log = daemon.LogConfig{Level: "info", Format: "text"}
	return cfg, nil
}

func checkPolicy(path string) error {
	_, err := policy.Load(path)
	return err
}

func bundlePEM(ca *devca.CA) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw})
}
