package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func credentialCmd() *cobra.Command {
	var (
		conn        connFlags
		entitlement string
		ttl         time.Duration
		output      string
		secretOnly  bool
	)
	cmd := &cobra.Command{
		Use:   "credential --entitlement NAME",
		Short: "Obtain a time-boxed credential as this workload",
		Long: "credential asks the broker for a credential under an entitlement, authenticating\n" +
			"with this workload's X.509-SVID. The broker records the grant before answering.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if entitlement == "" {
				return fmt.Errorf("--entitlement is required: %w", errUsage)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), conn.timeout)
			defer cancel()
			cc, closeConn, err := conn.dial(ctx)
			if err != nil {
				return err
			}
			defer closeConn()
			req := &brokerv1.IssueCredentialRequest{Entitlement: entitlement}
			if ttl != 0 {
				req.Ttl = durationpb.New(ttl)
			}
			resp, err := brokerv1.NewBrokerServiceClient(cc).IssueCredential(ctx, req)
			if err != nil {
				return err
			}
			c := resp.GetCredential()
			out := cmd.OutOrStdout()
			switch {
			case secretOnly:
				_, err = fmt.Fprintln(out, c.GetSecret())
				return err
			case output == "json":
				return writeJSON(out, map[string]any{
					"grant_id":    c.GetGrantId(),
					"entitlement": c.GetEntitlement(),
					"kind":        kindName(c.GetKind()),
					"secret":      c.GetSecret(),
					"reference":   c.GetReference(),
					"issued_at":   c.GetIssuedAt().AsTime().Format(time.RFC3339),
					"expires_at":  c.GetExpiresAt().AsTime().Format(time.RFC3339),
					"data":        c.GetData(),
					"break_glass": c.GetBreakGlass(),
				})
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "grant\t%s\n", esc(c.GetGrantId()))
			fmt.Fprintf(tw, "entitlement\t%s\n", esc(c.GetEntitlement()))
			fmt.Fprintf(tw, "kind\t%s\n", kindName(c.GetKind()))
			fmt.Fprintf(tw, "reference\t%s\n", esc(c.GetReference()))
			fmt.Fprintf(tw, "expires\t%s (in %s)\n", c.GetExpiresAt().AsTime().Local().Format(time.RFC3339), time.Until(c.GetExpiresAt().AsTime()).Round(time.Second))
			if c.GetSecret() != "" {
				fmt.Fprintf(tw, "credential\t%s\n", c.GetSecret())
			}
			keys := make([]string, 0, len(c.GetData()))
			for k := range c.GetData() {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\n", esc(k), esc(c.GetData()[k]))
			}
			return tw.Flush()
		},
	}
	conn.register(cmd)
	cmd.Flags().StringVarP(&entitlement, "entitlement", "e", "", "entitlement name (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "requested lifetime (default: the entitlement's max_ttl; more is refused)")
	cmd.Flags().BoolVar(&secretOnly, "secret-only", false, "print only the credential itself, for scripts")
	outputFlag(cmd, &output)
	return cmd
}

func kindName(k brokerv1.CredentialKind) string {
	switch k {
	case brokerv1.CredentialKind_CREDENTIAL_KIND_JWT:
		return "jwt"
	case brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_TOKEN:
		return "vault_token"
	case brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_SECRET:
		return "vault_secret"
	case brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_TRANSIT_JWT:
		return "vault_transit_jwt"
	default:
		return "unspecified"
	}
}
