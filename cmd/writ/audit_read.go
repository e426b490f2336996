package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/store/boltstore"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// csvHeader names the columns of `writ audit export --format csv`: the
// record's fields in the order of its canonical encoding (docs/ledger.md).
var csvHeader = []string{"seq", "time", "action", "actor", "subject", "entitlement", "rule", "outcome", "reason",
	"grant_id", "ttl_ns", "credential_kind", "credential_ref", "expires", "details", "prev_hash", "hash"}

// timeFilter is a --since or --until value: RFC 3339, or a duration back
// from now ("24h").
type timeFilter struct{ t time.Time }

func (f *timeFilter) String() string {
	if f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFilter) Set(s string) error {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		f.t = t
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is neither an RFC 3339 time nor a duration back from now (24h)", s)
	}
	f.t = time.Now().Add(-d)
	return nil
}

func (*timeFilter) Type() string { return "time" }

func (f *timeFilter) proto() *timestamppb.Timestamp {
	if f.t.IsZero() {
		return nil
	}
	return timestamppb.New(f.t)
}

// auditFlags are how the ledger commands reach the admin API: as a person
// (adminFlags: the profile's ID token, over TLS to the admin listener), or
// as an operator workload with --svid-dir (mutual TLS with its SVID to the
// gRPC listener, --broker), like writ entitlements.
type auditFlags struct {
	adminFlags
	svidDir, broker string
}

func (f *auditFlags) register(cmd *cobra.Command) {
	f.adminFlags.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.svidDir, "svid-dir", "", "call as an operator workload with the SVID in this directory (svid.pem, svid_key.pem, bundle.pem) instead of as a person")
	fl.StringVar(&f.broker, "broker", envOr("WRIT_BROKER", "127.0.0.1:8443"), "with --svid-dir: the broker's gRPC address (env WRIT_BROKER)")
}

// streamFlags registers auditFlags on a streaming command, whose --timeout
// defaults to no limit.
func (f *auditFlags) streamFlags(cmd *cobra.Command) {
	f.register(cmd)
	t := cmd.Flags().Lookup("timeout")
	t.Usage, t.DefValue = "give up after this long (default: no limit)", "0s"
}

// dial connects as an operator (--svid-dir) or as the logged-in person.
func (f *auditFlags) dial(ctx context.Context) (adminv1.AdminServiceClient, func(), error) {
	if f.svidDir == "" {
		return f.adminFlags.dial(ctx)
	}
	p, err := f.resolve()
	if err != nil {
		return nil, nil, err
	}
	cf := connFlags{broker: f.broker, brokerID: p.BrokerID, svidDir: f.svidDir}
	cc, done, err := cf.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	return adminv1.NewAdminServiceClient(cc), done, nil
}

// call checks --output and runs fn with a deadline of --timeout.
func (f *auditFlags) call(cmd *cobra.Command, output string, fn func(ctx context.Context, c adminv1.AdminServiceClient) error) error {
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

// streamCall is call for streaming commands: no deadline unless --timeout
// is given, since an export or a snapshot takes as long as the ledger is
// big.
func (f *auditFlags) streamCall(cmd *cobra.Command, fn func(ctx context.Context, c adminv1.AdminServiceClient) error) error {
	ctx := cmd.Context()
	if cmd.Flags().Changed("timeout") {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	c, done, err := f.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	return fn(ctx, c)
}

// writeAtomically runs write on a new file next to path and renames it to
// path once write and fsync succeed, so path is either the complete output
// or untouched. The file has mode 0600: it holds audit records. path "-"
// or "" writes to stdout.
func writeAtomically(stdout io.Writer, path string, write func(io.Writer) error) (err error) {
	if path == "" || path == "-" {
		bw := bufio.NewWriterSize(stdout, 1<<16)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// recordWriter writes records in an export format.
type recordWriter struct {
	jsonl bool
	w     io.Writer
	csv   *csv.Writer
	n     uint64
}

func newRecordWriter(format string, w io.Writer) (*recordWriter, error) {
	switch format {
	case "jsonl":
		return &recordWriter{jsonl: true, w: w}, nil
	case "csv":
		rw := &recordWriter{w: w, csv: csv.NewWriter(w)}
		return rw, rw.csv.Write(csvHeader)
	}
	return nil, fmt.Errorf("--format %q: use jsonl or csv: %w", format, errUsage)
}

// write writes one record: in jsonl, the stored bytes exactly and a
// newline; in csv, its decoded fields.
func (rw *recordWriter) write(seq uint64, raw []byte) error {
	rw.n++
	if rw.jsonl {
		if _, err := rw.w.Write(raw); err != nil {
			return err
		}
		_, err := rw.w.Write([]byte{'\n'})
		return err
	}
	e, err := audit.Decode(raw)
	if err != nil {
		return fmt.Errorf("record %d cannot be shown as CSV (export it as jsonl and run writ audit verify): %w", seq, err)
	}
	details := ""
	if len(e.Details) > 0 {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return err
		}
		details = string(b)
	}
	expires := ""
	if !e.Expires.IsZero() {
		expires = e.Expires.Format(time.RFC3339Nano)
	}
	return rw.csv.Write([]string{strconv.FormatUint(e.Seq, 10), e.Time.Format(time.RFC3339Nano), e.Action, e.Actor, e.Subject,
		e.Entitlement, e.Rule, e.Outcome, e.Reason, e.GrantID, strconv.FormatInt(int64(e.TTL), 10), e.CredentialKind,
		e.CredentialRef, expires, details, e.PrevHash, e.Hash})
}

func (rw *recordWriter) flush() error {
	if rw.csv != nil {
		rw.csv.Flush()
		return rw.csv.Error()
	}
	return nil
}

func auditExportCmd() *cobra.Command {
	var (
		f              auditFlags
		dir, format    string
		out            string
		kinds          []string
		since, until   timeFilter
		fromSeq, toSeq uint64
	)
	cmd := &cobra.Command{
		Use:   "export [--since T] [--until T] [--kind ACTION]... [--format jsonl|csv] [--out FILE]",
		Short: "Stream ledger records from a running broker, or offline from a data directory",
		Long: "export writes the ledger's records in sequence order. In jsonl, each line is one record\n" +
			"exactly as stored (the bytes its hash and the Merkle tree cover), so the file can be\n" +
			"verified offline. csv is for people: one header row, then the decoded fields.\n\n" +
			"Online (the default) it asks the broker's admin API, as an operator or a person in an\n" +
			"auditor group. With --data-dir it opens the data directory read-only instead (stop the\n" +
			"broker, or export from a copy taken with `writ audit snapshot`).\n\n" +
			"--since and --until take an RFC 3339 time or a duration back from now (24h). --out writes\n" +
			"the file atomically with mode 0600; without it records go to standard output.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "jsonl" && format != "csv" {
				return fmt.Errorf("--format %q: use jsonl or csv: %w", format, errUsage)
			}
			q := audit.Query{Actions: kinds, Since: since.t, Until: until.t, FromSeq: fromSeq, ToSeq: toSeq}
			var n uint64
			err := writeAtomically(cmd.OutOrStdout(), out, func(w io.Writer) error {
				rw, err := newRecordWriter(format, w)
				if err != nil {
					return err
				}
				if dir != "" {
					err = exportOffline(cmd.Context(), dir, q, rw)
				} else {
					err = f.streamCall(cmd, func(ctx context.Context, c adminv1.AdminServiceClient) error {
						return exportOnline(ctx, c, &adminv1.ExportLedgerRequest{Since: since.proto(), Until: until.proto(),
							Actions: kinds, FromSeq: fromSeq, ToSeq: toSeq}, rw)
					})
				}
				n = rw.n
				if ferr := rw.flush(); err == nil {
					err = ferr
				}
				return err
			})
			if err != nil {
				return err
			}
			if out != "" && out != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "exported %d records to %s\n", n, out)
			}
			return nil
		},
	}
	f.streamFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&dir, "data-dir", "", "read this data directory offline instead of asking the broker")
	fl.StringVar(&format, "format", "jsonl", "jsonl (records as stored) or csv")
	fl.StringVar(&out, "out", "", "write to this file (atomically, mode 0600) instead of standard output")
	fl.StringSliceVar(&kinds, "kind", nil, "only records with this action (repeat or comma-separate: grant,approve)")
	fl.Var(&since, "since", "only records at or after this time (RFC 3339, or a duration back from now)")
	fl.Var(&until, "until", "only records before this time")
	fl.Uint64Var(&fromSeq, "from-seq", 0, "first sequence number")
	fl.Uint64Var(&toSeq, "to-seq", 0, "last sequence number")
	return cmd
}

func exportOnline(ctx context.Context, c adminv1.AdminServiceClient, req *adminv1.ExportLedgerRequest, rw *recordWriter) error {
	stream, err := c.ExportLedger(ctx, req)
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, r := range resp.GetRecords() {
			if err := rw.write(r.GetSeq(), r.GetRecord()); err != nil {
				return err
			}
		}
	}
}

// openOffline opens a data directory's database read-only.
func openOffline(dir string) (*boltstore.Store, error) {
	s, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{ReadOnly: true, Check: true})
	if errors.Is(err, boltstore.ErrInUse) {
		return nil, fmt.Errorf("%w (a running broker holds it: stop it, or use the admin API without --data-dir, or `writ audit snapshot`)", err)
	}
	return s, err
}

func exportOffline(ctx context.Context, dir string, q audit.Query, rw *recordWriter) error {
	s, err := openOffline(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.ExportRecords(ctx, q, func(r audit.Record) error { return rw.write(r.Seq, r.Raw) })
}

func auditSearchCmd() *cobra.Command {
	var (
		f                                 auditFlags
		output, identity, ent, grant, ref string
		pageToken                         string
		actions                           []string
		since, until                      timeFilter
		limit                             int32
		oldest                            bool
	)
	cmd := &cobra.Command{
		Use:   "search [--identity P] [--entitlement E] [--action A]... [--since T] [--limit N] [--page-token T]",
		Short: "Search the ledger of a running broker, newest first, a page at a time",
		Long: "search asks the broker for the ledger records that match every filter given, newest\n" +
			"first (--oldest-first for the other order). --identity matches the principal who acted\n" +
			"or who benefited (a SPIFFE ID, or oidc:<issuer>#<subject>). When more records match,\n" +
			"the command prints the --page-token that continues the search.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, output, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				resp, err := c.SearchLedger(ctx, &adminv1.SearchLedgerRequest{
					Identity: identity, Entitlement: ent, Actions: actions, Since: since.proto(), Until: until.proto(),
					GrantId: grant, RequestId: ref, PageSize: limit, PageToken: pageToken, OldestFirst: oldest,
				})
				if err != nil {
					return err
				}
				return printSearch(cmd.OutOrStdout(), output, resp)
			})
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&identity, "identity", "", "principal who acted or benefited")
	fl.StringVar(&ent, "entitlement", "", "entitlement name")
	fl.StringSliceVar(&actions, "action", nil, "action (repeat or comma-separate: grant,revoke)")
	fl.StringVar(&grant, "grant", "", "grant ID")
	fl.StringVar(&ref, "request", "", "access request or break-glass ID")
	fl.Var(&since, "since", "records at or after this time (RFC 3339, or a duration back from now)")
	fl.Var(&until, "until", "records before this time")
	fl.Int32Var(&limit, "limit", 50, "records per page (at most 1000)")
	fl.StringVar(&pageToken, "page-token", "", "continue a previous search (same filters)")
	fl.BoolVar(&oldest, "oldest-first", false, "oldest records first")
	outputFlag(cmd, &output)
	return cmd
}

func printSearch(out io.Writer, output string, resp *adminv1.SearchLedgerResponse) error {
	if output == "json" {
		recs := []json.RawMessage{}
		for _, r := range resp.GetRecords() {
			recs = append(recs, json.RawMessage(r.GetRecord()))
		}
		return writeJSON(out, map[string]any{"records": recs, "next_page_token": resp.GetNextPageToken()})
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTION\tOUTCOME\tACTOR\tSUBJECT\tENTITLEMENT\tGRANT")
	for _, r := range resp.GetRecords() {
		e, err := audit.Decode(r.GetRecord())
		if err != nil {
			fmt.Fprintf(tw, "%d\t(unreadable: %v)\n", r.GetSeq(), err)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Local().Format(time.RFC3339), e.Action, e.Outcome,
			dash(e.Actor), dash(e.Subject), dash(e.Entitlement), dash(e.GrantID))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if t := resp.GetNextPageToken(); t != "" {
		fmt.Fprintf(out, "more: add --page-token %s\n", t)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func auditSnapshotCmd() *cobra.Command {
	var (
		f   auditFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "snapshot --out FILE",
		Short: "Copy a running broker's database consistently, for backups and offline verification",
		Long: "snapshot asks the broker for a consistent copy of its whole database (one bbolt read\n" +
			"transaction) while it keeps serving, writes it to FILE atomically with mode 0600, and\n" +
			"checks the copy's ledger. A plain cp of a live data directory can be torn; this cannot.\n" +
			"To verify it later or restore it, name the file writ.db in a directory of its own:\n" +
			"  writ audit snapshot --out backup/writ.db && writ audit verify --data-dir backup",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" || out == "-" {
				return fmt.Errorf("--out FILE is required: %w", errUsage)
			}
			var n int64
			err := f.streamCall(cmd, func(ctx context.Context, c adminv1.AdminServiceClient) error {
				return writeAtomically(nil, out, func(w io.Writer) error {
					stream, err := c.Snapshot(ctx, &adminv1.SnapshotRequest{})
					if err != nil {
						return err
					}
					for {
						resp, err := stream.Recv()
						if errors.Is(err, io.EOF) {
							return nil
						}
						if err != nil {
							return err
						}
						k, err := w.Write(resp.GetData())
						n += int64(k)
						if err != nil {
							return err
						}
					}
				})
			})
			if err != nil {
				return err
			}
			s, err := boltstore.Open(out, boltstore.Options{ReadOnly: true, Check: true})
			if err != nil {
				return fmt.Errorf("%w: the snapshot in %s does not open: %w", errVerify, out, err)
			}
			defer s.Close()
			sum, err := audit.Verify(cmd.Context(), s)
			if err != nil {
				return fmt.Errorf("%w: snapshot %s: %w", errVerify, out, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "snapshot %s: %d bytes, ledger ok: %d records, head %s\n", out, n, sum.Records, sum.Head)
			return nil
		},
	}
	f.streamFlags(cmd)
	cmd.Flags().StringVar(&out, "out", "", "file to write (required)")
	return cmd
}
