package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/spf13/cobra"
)

func logoutCmd() *cobra.Command {
	var (
		name    string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "logout",
		Short: "Forget a profile's tokens, revoking the refresh token at the identity provider",
		Long: "logout removes the ID and refresh tokens from a profile (where the admin API is and how\n" +
			"to recognise the broker are kept for the next `writ login`). When the identity provider\n" +
			"advertises a revocation endpoint, the refresh token is revoked there first; the tokens\n" +
			"are removed locally even when that fails.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadProfile(name)
			if err != nil {
				return err
			}
			path, err := profilePath(name)
			if err != nil {
				return err
			}
			if p.Token == "" && p.RefreshToken == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "profile %q holds no sign-in\n", name)
				return nil
			}
			var revokeErr error
			revoked := false
			if p.RefreshToken != "" && p.Issuer != "" {
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				revoked, revokeErr = revokeRefreshToken(ctx, p)
				cancel()
			}
			p.Token, p.RefreshToken, p.Expiry = "", "", time.Time{}
			if _, err := saveProfile(name, p); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "logged out of profile %q (tokens removed from %s)\n", name, path)
			switch {
			case revokeErr != nil:
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: could not revoke the refresh token at %s: %v\n", p.Issuer, revokeErr)
			case revoked:
				fmt.Fprintf(out, "refresh token revoked at %s\n", p.Issuer)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "profile", envOr("WRIT_PROFILE", "default"), "profile to log out of (env WRIT_PROFILE)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up on the identity provider after this long")
	return cmd
}

// revokeRefreshToken revokes p's refresh token at the provider (RFC 7009)
// when it advertises a revocation endpoint. It reports whether it did.
func revokeRefreshToken(ctx context.Context, p profile) (bool, error) {
	prov, err := gooidc.NewProvider(ctx, p.Issuer)
	if err != nil {
		return false, err
	}
	var meta struct {
		RevocationEndpoint string `json:"revocation_endpoint"`
	}
	if err := prov.Claims(&meta); err != nil {
		return false, err
	}
	if meta.RevocationEndpoint == "" {
		return false, nil
	}
	form := url.Values{"token": {p.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {p.ClientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, meta.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return true, nil
}
