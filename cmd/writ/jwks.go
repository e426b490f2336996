package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"
)

func jwksCmd() *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "jwks --url URL",
		Short: "Print the broker's JWT verification keys (JWKS)",
		Long:  "jwks fetches the JSON Web Key Set relying parties use to verify JWTs the broker issues.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), defaultHTTPTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return fmt.Errorf("--url %q: %v: %w", url, err, errUsage)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("fetch JWKS: %w", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if err != nil {
				return fmt.Errorf("read JWKS: %w", err)
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("fetch JWKS: %s: %s", resp.Status, bytes.TrimSpace(body))
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, body, "", "  "); err != nil {
				return fmt.Errorf("JWKS is not JSON: %w", err)
			}
			pretty.WriteByte('\n')
			_, err = pretty.WriteTo(cmd.OutOrStdout())
			return err
		},
	}
	cmd.Flags().StringVar(&url, "url", envOr("WRIT_JWKS_URL", "http://127.0.0.1:8080/.well-known/jwks.json"), "JWKS URL (env WRIT_JWKS_URL)")
	return cmd
}
