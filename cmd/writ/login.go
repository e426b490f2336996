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

	"github.com/spf13/cobra"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

func loginCmd() *cobra.Command {
	var (
		f         adminFlags
		dev       string
		groups    []string
		devURL    string
		tokenFile string
	)
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in as a person: store an OIDC ID token for later commands",
		Long: "login stores an OIDC ID token in a profile (mode 0600) together with how to reach\n" +
			"the admin API. The token comes from --token-file, the WRIT_TOKEN variable, or, against\n" +
			"`writd dev` only, from the dev issuer (--dev NAME --groups ...).",
		Example: "  writ login --dev alice --groups dba --profile alice --admin 127.0.0.1:8444 \\\n" +
			"    --broker-id spiffe://writ.dev/writd --bundle ./writ-dev/bundle.pem\n" +
			"  writ login --token-file ~/idtoken --admin writ.example.org:8444 --broker-id ... --bundle ...",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			p, err := f.resolve()
			if err != nil {
				return err
			}
			switch {
			case dev != "":
				if p.Token, err = devToken(ctx, devURL, dev, groups); err != nil {
					return err
				}
			case tokenFile != "":
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				p.Token = strings.TrimSpace(string(b))
			case os.Getenv("WRIT_TOKEN") != "":
				// resolve already took it.
			default:
				return fmt.Errorf("give a token: --token-file FILE, WRIT_TOKEN, or --dev NAME against writd dev: %w", errUsage)
			}
			cc, err := dialAdmin(p)
			if err != nil {
				return err
			}
			defer cc.Close()
			me, err := adminv1.NewAdminServiceClient(cc).WhoAmI(ctx, &adminv1.WhoAmIRequest{})
			if err != nil {
				return err
			}
			path, err := saveProfile(f.profile, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in as %s (groups: %s); profile %q saved in %s\n",
				esc(me.GetPrincipal()), escJoin(me.GetGroups(), ", "), f.profile, path)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&dev, "dev", "", "get a token for this name from writd dev's dev issuer")
	cmd.Flags().StringSliceVar(&groups, "groups", nil, "groups for the --dev token")
	cmd.Flags().StringVar(&devURL, "dev-url", envOr("WRIT_DEV_URL", "http://127.0.0.1:8080"), "writd dev's HTTP address (env WRIT_DEV_URL)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding an OIDC ID token")
	return cmd
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
		return "", fmt.Errorf("dev issuer: %s: %s", esc(resp.Status), esc(string(bytes.TrimSpace(b))))
	}
	var out struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.IDToken == "" {
		return "", fmt.Errorf("dev issuer returned no token")
	}
	return out.IDToken, nil
}
