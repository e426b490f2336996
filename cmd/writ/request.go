package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func requestCmd() *cobra.Command {
	var (
		f                  adminFlags
		conn               connFlags
		forID, entitlement string
		reason, ticket     string
		duration           time.Duration
		wait               bool
		output             string
	)
	cmd := &cobra.Command{
		Use:   "request --entitlement NAME --duration 2h --reason TEXT [--for SPIFFE_ID]",
		Short: "Ask for an entitlement that needs approval",
		Long: "request asks people to approve an entitlement. With --for, a signed-in person asks on a\n" +
			"workload's behalf (admin API). Without it, the workload asks for itself with its SVID\n" +
			"(--svid-dir or a Workload API socket) and may --wait until the request is resolved.\n" +
			"The approval window starts when the request is approved.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if entitlement == "" || duration <= 0 {
				return fmt.Errorf("--entitlement and a positive --duration are required: %w", errUsage)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			var r *brokerv1.AccessRequest
			if forID != "" {
				if wait {
					return fmt.Errorf("--wait is for workloads asking for themselves: %w", errUsage)
				}
				c, done, err := f.dial(ctx)
				if err != nil {
					return err
				}
				defer done()
				resp, err := c.CreateRequest(ctx, &adminv1.CreateRequestRequest{Beneficiary: forID, Entitlement: entitlement,
					Duration: durationpb.New(duration), Reason: reason, Ticket: ticket})
				if err != nil {
					return err
				}
				r = resp.GetRequest()
			} else {
				if wait {
					// Waiting for people may take long; only --wait-timeout bounds it.
					cancel()
					ctx, cancel = context.WithTimeout(cmd.Context(), conn.timeout)
					defer cancel()
				}
				cc, done, err := conn.dial(ctx)
				if err != nil {
					return err
				}
				defer done()
				c := brokerv1.NewBrokerServiceClient(cc)
				resp, err := c.RequestAccess(ctx, &brokerv1.RequestAccessRequest{Entitlement: entitlement,
					Duration: durationpb.New(duration), Reason: reason, Ticket: ticket})
				if err != nil {
					return err
				}
				r = resp.GetRequest()
				if wait {
					fmt.Fprintf(cmd.ErrOrStderr(), "request %s is pending; waiting for reviews...\n", esc(r.GetId()))
					if r, err = watch(ctx, c, r.GetId()); err != nil {
						return err
					}
				}
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), requestJSON(r))
			}
			return printRequest(cmd.OutOrStdout(), r)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&conn.broker, "broker", envOr("WRIT_BROKER", "127.0.0.1:8443"), "broker gRPC address, for a workload asking for itself (env WRIT_BROKER)")
	cmd.Flags().StringVar(&conn.svidDir, "svid-dir", "", "the workload's SVID directory, for a workload asking for itself (env WRIT_SVID_DIR)")
	cmd.Flags().StringVar(&conn.socket, "socket", "", "SPIFFE Workload API socket, for a workload asking for itself (env SPIFFE_ENDPOINT_SOCKET)")
	cmd.Flags().DurationVar(&conn.timeout, "wait-timeout", time.Hour, "with --wait: give up after this long")
	cmd.Flags().StringVar(&forID, "for", "", "SPIFFE ID of the workload to request for (as a signed-in person)")
	cmd.Flags().StringVarP(&entitlement, "entitlement", "e", "", "entitlement name (required)")
	cmd.Flags().DurationVar(&duration, "duration", 0, "how long the approval should last once approved (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why access is needed")
	cmd.Flags().StringVar(&ticket, "ticket", "", "change or incident reference")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the request is approved, denied or expires (workload only)")
	outputFlag(cmd, &output)
	cmd.PreRun = func(*cobra.Command, []string) {
		conn.brokerID = f.brokerID
		if conn.svidDir == "" {
			conn.svidDir = envOr("WRIT_SVID_DIR", "")
		}
		if conn.socket == "" {
			conn.socket = envOr("SPIFFE_ENDPOINT_SOCKET", "")
		}
	}
	return cmd
}

// watch follows a request until it is resolved and returns its last state.
func watch(ctx context.Context, c brokerv1.BrokerServiceClient, id string) (*brokerv1.AccessRequest, error) {
	stream, err := c.WatchRequest(ctx, &brokerv1.WatchRequestRequest{RequestId: id})
	if err != nil {
		return nil, err
	}
	var last *brokerv1.AccessRequest
	for {
		resp, err := stream.Recv()
		if err != nil {
			if last != nil && last.GetState() != brokerv1.RequestState_REQUEST_STATE_PENDING {
				return last, nil
			}
			return nil, err
		}
		last = resp.GetRequest()
	}
}
