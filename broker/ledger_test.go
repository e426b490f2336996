package broker_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/jwtissuer"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/store/boltstore"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// ledgerPolicy is approvalPolicy plus an automatic JWT entitlement.
const ledgerPolicy = approvalPolicy + `  - name: orders-auto
    owner: team-orders
    purpose: test
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {jwt: {audience: [orders]}}
    approval: {mode: auto}
`

// operatorAdmin returns an admin client that authenticates with id's SVID
// over mutual TLS, as operators do.
func (e *apprEnv) operatorAdmin(id spiffeid.ID) adminv1.AdminServiceClient {
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(spiffe.ClientCredentials(
		memSource{SVID: mustSVID(e.t, e.ca, id), Bundle: e.ca.Bundle()}, tlsconfig.AuthorizeID(brokerID))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cc.Close() })
	return adminv1.NewAdminServiceClient(cc)
}

// stored returns every stored record's bytes, by sequence number.
func (e *apprEnv) stored() [][]byte {
	e.t.Helper()
	var out [][]byte
	if err := e.store.ScanRecords(context.Background(), func(_ uint64, raw []byte) error {
		out = append(out, raw)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// activity makes a ledger of several kinds: grants, a denial, a request
// with two approvals and a grant under it, a break-glass use.
func activity(t *testing.T, e *apprEnv) (requestID string) {
	t.Helper()
	w := e.workload(orderAPI)
	for range 3 {
		if _, err := issue(w, "orders-auto", 5*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := issue(e.workload(stranger), "orders-auto", time.Minute); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("stranger: %v, want PERMISSION_DENIED", err)
	}
	r := requestAccess(t, w, "db-admin", 30*time.Minute)
	for _, who := range []string{"alice", "bob"} {
		if _, err := approve(e, who, r.GetId()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := issue(w, "db-admin", 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := breakGlass(w, "bg-db", "incident 42", time.Minute); err != nil {
		t.Fatal(err)
	}
	return r.GetId()
}

func exportAll(ctx context.Context, c adminv1.AdminServiceClient, req *adminv1.ExportLedgerRequest) ([]*adminv1.LedgerRecord, error) {
	stream, err := c.ExportLedger(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []*adminv1.LedgerRecord
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, resp.GetRecords()...)
	}
}

func snapshot(ctx context.Context, c adminv1.AdminServiceClient, w io.Writer) error {
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
		if _, err := w.Write(resp.GetData()); err != nil {
			return err
		}
	}
}

// Who may read the ledger: operators and people in an auditor group; no
// one else, for each of the three RPCs.
func TestLedger_Authorization(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{policy: ledgerPolicy})
	activity(t, e)
	tests := []struct {
		name   string
		client adminv1.AdminServiceClient
		want   codes.Code
	}{
		{"person in the auditors group", e.person("audra"), codes.OK},
		{"operator workload", e.operatorAdmin(operator), codes.OK},
		{"person who approves but does not audit", e.person("alice"), codes.PermissionDenied},
		{"person in security", e.person("dave"), codes.PermissionDenied},
		{"workload that is not an operator", e.operatorAdmin(orderAPI), codes.PermissionDenied},
		{"nobody", e.person(""), codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			_, err := tt.client.SearchLedger(ctx, &adminv1.SearchLedgerRequest{})
			if got := status.Code(err); got != tt.want {
				t.Errorf("SearchLedger: %v, want %v", err, tt.want)
			}
			_, err = exportAll(ctx, tt.client, &adminv1.ExportLedgerRequest{})
			if got := status.Code(err); got != tt.want {
				t.Errorf("ExportLedger: %v, want %v", err, tt.want)
			}
			err = snapshot(ctx, tt.client, io.Discard)
			if got := status.Code(err); got != tt.want {
				t.Errorf("Snapshot: %v, want %v", err, tt.want)
			}
		})
	}
}

// The auditor groups are configurable: with [security], dave reads and the
// default group does not.
func TestLedger_AuditorGroupsConfigurable(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{policy: ledgerPolicy, auditorGroups: []string{"security"}})
	for who, want := range map[string]codes.Code{"dave": codes.OK, "sam": codes.OK, "audra": codes.PermissionDenied} {
		_, err := e.person(who).SearchLedger(t.Context(), &adminv1.SearchLedgerRequest{})
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", who, err, want)
		}
	}
}

// Export over the admin API gives the stored bytes, byte for byte, in
// order; filters select by kind, time and sequence number.
func TestLedger_ExportByteIdentical(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{policy: ledgerPolicy})
	activity(t, e)
	stored := e.stored()
	c := e.person("audra")
	recs, err := exportAll(t.Context(), c, &adminv1.ExportLedgerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(stored) {
		t.Fatalf("exported %d records, stored %d", len(recs), len(stored))
	}
	for i, r := range recs {
		if r.GetSeq() != uint64(i+1) || !bytes.Equal(r.GetRecord(), stored[i]) {
			t.Fatalf("record %d: exported seq %d %q, stored %q", i+1, r.GetSeq(), r.GetRecord(), stored[i])
		}
	}
	grants, err := exportAll(t.Context(), c, &adminv1.ExportLedgerRequest{Actions: []string{broker.ActionGrant}, FromSeq: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range grants {
		en, err := audit.Decode(r.GetRecord())
		if err != nil || en.Action != broker.ActionGrant || r.GetSeq() < 2 {
			t.Errorf("filtered export returned seq %d %q (%v)", r.GetSeq(), en.Action, err)
		}
	}
	if len(grants) != 3 { // the first of four grants is seq 1
		t.Errorf("grants from seq 2: %d, want 3", len(grants))
	}
}

// Search over the admin API: filters, and paging in both orders returns
// every match exactly once.
func TestLedger_SearchPaging(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{policy: ledgerPolicy})
	requestID := activity(t, e)
	c := e.person("audra")
	for _, req := range []*adminv1.SearchLedgerRequest{
		{},
		{Identity: orderAPI.String()},
		{Identity: "oidc:https://idp.test#alice"},
		{Entitlement: "db-admin"},
		{RequestId: requestID},
		{Actions: []string{broker.ActionGrant, broker.ActionBreakGlass}},
	} {
		for _, oldest := range []bool{false, true} {
			all := searchAll(t, c, req, oldest, 1000)
			if len(all) == 0 {
				t.Errorf("search %v: no records", req)
			}
			paged := searchAll(t, c, req, oldest, 2)
			if !slices.Equal(paged, all) {
				t.Errorf("search %v oldest=%v: pages of 2 give %v, one page %v", req, oldest, paged, all)
			}
			sorted := slices.IsSorted(all)
			if oldest != sorted && len(all) > 1 {
				t.Errorf("search %v oldest=%v: order %v", req, oldest, all)
			}
		}
	}
	// The request's records: the request, two reviews, the approval, the
	// grant under it.
	got := searchAll(t, c, &adminv1.SearchLedgerRequest{RequestId: requestID}, true, 100)
	if len(got) < 4 {
		t.Errorf("records of %s: %v, want at least request, 2 reviews, approval", requestID, got)
	}
	_, err := c.SearchLedger(t.Context(), &adminv1.SearchLedgerRequest{PageToken: "not-a-token"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad page token: %v, want INVALID_ARGUMENT", err)
	}
}

func searchAll(t *testing.T, c adminv1.AdminServiceClient, req *adminv1.SearchLedgerRequest, oldest bool, size int32) []uint64 {
	t.Helper()
	var out []uint64
	token := ""
	for range 1000 {
		resp, err := c.SearchLedger(t.Context(), &adminv1.SearchLedgerRequest{
			Identity: req.Identity, Entitlement: req.Entitlement, Actions: req.Actions, RequestId: req.RequestId,
			OldestFirst: oldest, PageSize: size, PageToken: token,
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetRecords()); n > int(size) {
			t.Fatalf("page of %d, asked %d", n, size)
		}
		for _, r := range resp.GetRecords() {
			out = append(out, r.GetSeq())
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out
		}
	}
	t.Fatal("paging does not end")
	return nil
}

// T42: a snapshot of a broker under concurrent grants is a consistent file
// whose ledger verifies offline.
func TestLedger_SnapshotUnderLoad(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{policy: ledgerPolicy})
	activity(t, e)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	w := e.workload(orderAPI)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := issue(w, "orders-auto", time.Minute); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		})
	}
	dir := t.TempDir()
	for i := range 3 {
		path := filepath.Join(dir, "snap"+string(rune('0'+i))+".db")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := snapshot(t.Context(), e.person("audra"), f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := audit.Verify(t.Context(), s)
		_ = s.Close()
		if err != nil || sum.Records < 10 {
			t.Errorf("snapshot %d: %+v, %v; want a ledger that verifies", i, sum, err)
		}
	}
	cancel()
	wg.Wait()
}

// GetBreakGlass shows the use's records from the indexes.
func TestLedger_BreakGlassEvidenceFromIndex(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{policy: ledgerPolicy})
	activity(t, e)
	list, err := e.person("dave").ListBreakGlass(t.Context(), &adminv1.ListBreakGlassRequest{})
	if err != nil || len(list.GetRecords()) != 1 {
		t.Fatalf("ListBreakGlass = %v, %v", list, err)
	}
	id := list.GetRecords()[0].GetId()
	if _, err := e.person("dave").ReviewBreakGlass(t.Context(), &adminv1.ReviewBreakGlassRequest{Id: id, Outcome: "justified", Notes: "fine"}); err != nil {
		t.Fatal(err)
	}
	got, err := e.person("dave").GetBreakGlass(t.Context(), &adminv1.GetBreakGlassRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, ev := range got.GetLedger() {
		actions = append(actions, ev.GetAction())
	}
	want := []string{broker.ActionBreakGlass, broker.ActionBreakGlassReview, broker.ActionBreakGlassClosed}
	if !slices.Equal(actions, want) {
		t.Errorf("evidence = %v, want %v", actions, want)
	}
}

// T35: with real JWTs issued (the local issuer), neither the ledger nor any
// other byte of the database holds a token or its signature.
func TestLedger_NoSecretsStored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	iss, err := jwtissuer.New(jwtissuer.Config{KeyFile: filepath.Join(dir, "jwt.key"), Issuer: "https://writ.test"})
	if err != nil {
		t.Fatal(err)
	}
	e := newApprEnv(t, apprOptions{policy: ledgerPolicy, issuers: map[approval.CredentialKind]broker.Issuer{approval.KindJWT: iss}})
	w := e.workload(orderAPI)
	var secrets []string
	take := func(c *brokerv1.Credential, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		tok := c.GetSecret()
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("credential %q is not a JWT", tok)
		}
		secrets = append(secrets, tok, parts[1], parts[2])
	}
	for range 3 {
		take(issue(w, "orders-auto", 5*time.Minute))
	}
	bg, err := breakGlass(w, "bg-db", "incident 7", time.Minute)
	take(bg.GetCredential(), err)

	recs, err := exportAll(t.Context(), e.person("audra"), &adminv1.ExportLedgerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := snapshot(t.Context(), e.person("audra"), &snap); err != nil {
		t.Fatal(err)
	}
	hits := 0
	for _, s := range secrets {
		for _, r := range recs {
			if bytes.Contains(r.GetRecord(), []byte(s)) {
				hits++
				t.Errorf("ledger record %d holds a secret", r.GetSeq())
			}
		}
		if bytes.Contains(snap.Bytes(), []byte(s)) {
			hits++
			t.Errorf("the database file holds a secret")
		}
	}
	if hits != 0 || len(recs) < 4 {
		t.Errorf("%d hits in %d records; want 0 hits in at least 4", hits, len(recs))
	}
}
