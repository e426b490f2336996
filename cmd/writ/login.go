package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// signInTimeout bounds how long `writ login` waits for the person to sign
// in with their identity provider.
const signInTimeout = 10 * time.Minute

func loginCmd() *cobra.Command {
	var (
		f         adminFlags
		dev       string
		groups    []string
		devURL    string
		tokenFile string
		oidcFlags oidcLoginFlags
	)
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in as a person with your identity provider (browser or device code)",
		Long: "login signs you in with your OpenID Connect identity provider and stores the ID token,\n" +
			"a refresh token (renewed automatically before the ID token expires) and how to reach the\n" +
			"admin API in a profile (mode 0600).\n\n" +
			"By default it opens a browser (authorization code with PKCE, redirect to a loopback port);\n" +
			"--no-browser prints the URL instead; --device shows a code to enter on any other device\n" +
			"(for machines without a browser). --issuer and --client-id are remembered in the profile.\n\n" +
			"For automation, --token-file or WRIT_TOKEN hand over an ID token; against `writd dev` only,\n" +
			"--dev NAME --groups ... gets one from the dev issuer.",
		Example: "  writ login --issuer https://idp.example.org --client-id writ-cli \\\n" +
			"    --admin writ.example.org:8444 --broker-id spiffe://example.org/writd --bundle ./bundle.pem\n" +
			"  writ login --device\n" +
			"  writ login --dev alice --groups dba --profile alice --admin 127.0.0.1:8444 \\\n" +
			"    --broker-id spiffe://writ.dev/writd --bundle ./writ-dev/bundle.pem\n" +
			"  writ login --token-file ~/idtoken --admin writ.example.org:8444 --broker-id ... --bundle ...",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.resolve()
			if err != nil {
				return err
			}
			// A token handed over by other means replaces any earlier sign-in.
			oidcSignIn := dev == "" && tokenFile == "" && os.Getenv("WRIT_TOKEN") == ""
			if !oidcSignIn {
				p.RefreshToken, p.Issuer, p.ClientID, p.Scopes, p.Expiry = "", "", "", nil, time.Time{}
			}
			switch {
			case dev != "":
				ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
				defer cancel()
				if p.Token, err = devToken(ctx, devURL, dev, groups); err != nil {
					return err
				}
			case tokenFile != "":
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				p.Token = strings.TrimSpace(string(b))
			case !oidcSignIn:
				// WRIT_TOKEN: resolve already took it.
			default:
				if p, err = oidcFlags.signIn(cmd, p); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			cc, err := dialAdmin(p)
			if err != nil {
				return err
			}
			defer cc.Close()
			me, err := adminv1.NewAdminServiceClient(cc).WhoAmI(ctx, &adminv1.WhoAmIRequest{})
			if err != nil {
				return err
			}
			p.Principal = me.GetPrincipal()
			if me.GetExpiresAt() != nil && p.Expiry.IsZero() {
				p.Expiry = me.GetExpiresAt().AsTime()
			}
			path, err := saveProfile(f.profile, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in as %s (groups: %s); profile %q saved in %s\n",
				me.GetPrincipal(), strings.Join(me.GetGroups(), ", "), f.profile, path)
			return nil
		},
	}
	f.register(cmd)
	oidcFlags.register(cmd)
	cmd.Flags().StringVar(&dev, "dev", "", "get a token for this name from writd dev's dev issuer")
	cmd.Flags().StringSliceVar(&groups, "groups", nil, "groups for the --dev token")
	cmd.Flags().StringVar(&devURL, "dev-url", envOr("WRIT_DEV_URL", "http://127.0.0.1:8080"), "writd dev's HTTP address (env WRIT_DEV_URL)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding an OIDC ID token (automation)")
	cmd.MarkFlagsMutuallyExclusive("dev", "token-file", "device")
	cmd.MarkFlagsMutuallyExclusive("dev", "token-file", "no-browser")
	return cmd
}

// oidcLoginFlags choose how a person signs in with their identity provider.
type oidcLoginFlags struct {
	issuer    string
	clientID  string
	scopes    []string
	device    bool
	noBrowser bool
}

func (o *oidcLoginFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&o.issuer, "issuer", os.Getenv("WRIT_OIDC_ISSUER"), "your identity provider's issuer URL (env WRIT_OIDC_ISSUER; default from the profile)")
	fl.StringVar(&o.clientID, "client-id", os.Getenv("WRIT_OIDC_CLIENT_ID"), "the client ID registered for the writ CLI (env WRIT_OIDC_CLIENT_ID; default from the profile)")
	fl.StringSliceVar(&o.scopes, "scopes", nil, "scopes to ask for (default "+strings.Join(defaultScopes, ",")+")")
	fl.BoolVar(&o.device, "device", false, "sign in with a code entered on another device (no browser here)")
	fl.BoolVar(&o.noBrowser, "no-browser", false, "print the sign-in URL instead of opening a browser")
}

// signIn runs the browser or device flow and returns p holding the tokens.
func (o *oidcLoginFlags) signIn(cmd *cobra.Command, p profile) (profile, error) {
	if o.issuer != "" {
		p.Issuer = o.issuer
	}
	if o.clientID != "" {
		p.ClientID = o.clientID
	}
	if len(o.scopes) > 0 {
		p.Scopes = o.scopes
	}
	if p.Issuer == "" || p.ClientID == "" {
		return profile{}, fmt.Errorf("sign in with --issuer URL --client-id ID (your identity provider), "+
			"or give a token: --token-file FILE, WRIT_TOKEN, or --dev NAME against writd dev: %w", errUsage)
	}
	// Check how to reach the broker before the person signs in.
	cc, err := dialAdmin(p)
	if err != nil {
		return profile{}, err
	}
	_ = cc.Close()
	c := &oidcClient{
		Issuer: p.Issuer, ClientID: p.ClientID, Scopes: p.Scopes,
		OpenURL:        openBrowser,
		ShowDeviceCode: showDeviceCode(cmd.OutOrStdout()),
	}
	if o.noBrowser {
		c.OpenURL = printURL(cmd.OutOrStdout())
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), signInTimeout)
	defer cancel()
	var s signIn
	if o.device {
		s, err = c.Device(ctx)
	} else {
		s, err = c.Browser(ctx)
	}
	if err != nil {
		return profile{}, err
	}
	p.Token, p.RefreshToken, p.Expiry = s.IDToken, s.RefreshToken, s.Expiry
	return p, nil
}

// devToken asks writd dev's dev-only issuer for a token.
func devToken(ctx context.Context, base, name string, groups []string) (string, error) {
	body, _ := json.Marshal(map[string]any{"subject": name, "groups": groups})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/dev-oidc/token", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("--dev-url: %v: %w", err, errUsage)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("dev issuer (is writd dev running?): %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dev issuer: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var out struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.IDToken == "" {
		return "", fmt.Errorf("dev issuer returned no token")
	}
	return out.IDToken, nil
}
