package broker_test

import (
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// checkWithLibrary checks a ProveRecord answer with the note and tlog
// packages only: the signature, then the inclusion proof against the root
// the checkpoint states.
func checkWithLibrary(t *testing.T, resp *adminv1.ProveRecordResponse, verifier note.Verifier) {
	t.Helper()
	n, err := note.Open(resp.GetCheckpoint(), note.VerifierList(verifier))
	if err != nil {
		t.Fatalf("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size != resp.GetTreeSize() {
		t.Fatalf("checkpoint size %q, response says %d", lines[1], resp.GetTreeSize())
	}
	var root tlog.Hash
	if b, err := base64.StdEncoding.DecodeString(lines[2]); err != nil || copy(root[:], b) != tlog.HashSize {
		t.Fatalf("checkpoint root %q: %v", lines[2], err)
	}
	var proof tlog.RecordProof
	for _, h := range resp.GetProof() {
		var x tlog.Hash
		copy(x[:], h)
		proof = append(proof, x)
	}
	seq := int64(resp.GetRecord().GetSeq())
	if err := tlog.CheckRecord(proof, size, root, seq-1, tlog.RecordHash(resp.GetRecord().GetRecord())); err != nil {
		t.Errorf("tlog.CheckRecord(record %d in size %d): %v", seq, size, err)
	}
}

// ProveRecord: a record by grant or by sequence number, its proof checked
// by tlog.CheckRecord against a checkpoint checked by note.Open.
func TestLedger_ProveRecord(t *testing.T) {
	t.Parallel()
	e := newApprEnv(t, apprOptions{policy: ledgerPolicy})
	activity(t, e)
	c := e.person("audra")

	if _, err := c.ProveRecord(t.Context(), &adminv1.ProveRecordRequest{Seq: 1}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("before any checkpoint: %v, want FAILED_PRECONDITION", err)
	}
	skey, vkey, err := audit.GenerateLedgerKey(rand.Reader, "writ.test/ledger")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := checkpoint.New(t.Context(), checkpoint.Config{Store: e.store, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.SignNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := cp.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	stored := e.stored()
	grants, err := c.SearchLedger(t.Context(), &adminv1.SearchLedgerRequest{Actions: []string{"grant"}, OldestFirst: true})
	if err != nil || len(grants.GetRecords()) == 0 {
		t.Fatalf("grants: %v, %v", grants, err)
	}
	first, err := audit.Decode(grants.GetRecords()[0].GetRecord())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     *adminv1.ProveRecordRequest
		wantSeq uint64
		want    codes.Code
	}{
		{"first record", &adminv1.ProveRecordRequest{Seq: 1}, 1, codes.OK},
		{"last record", &adminv1.ProveRecordRequest{Seq: uint64(len(stored))}, uint64(len(stored)), codes.OK},
		{"a middle record", &adminv1.ProveRecordRequest{Seq: uint64(len(stored) / 2)}, uint64(len(stored) / 2), codes.OK},
		{"by grant", &adminv1.ProveRecordRequest{GrantId: first.GrantID}, first.Seq, codes.OK},
		{"past the head", &adminv1.ProveRecordRequest{Seq: uint64(len(stored) + 1)}, 0, codes.NotFound},
		{"unknown grant", &adminv1.ProveRecordRequest{GrantId: "g_nope"}, 0, codes.NotFound},
		{"neither", &adminv1.ProveRecordRequest{}, 0, codes.InvalidArgument},
		{"both", &adminv1.ProveRecordRequest{Seq: 1, GrantId: first.GrantID}, 0, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.ProveRecord(t.Context(), tt.req)
			if status.Code(err) != tt.want {
				t.Fatalf("ProveRecord = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			if resp.GetRecord().GetSeq() != tt.wantSeq || string(resp.GetRecord().GetRecord()) != string(stored[tt.wantSeq-1]) {
				t.Errorf("record %d, want %d as stored", resp.GetRecord().GetSeq(), tt.wantSeq)
			}
			checkWithLibrary(t, resp, verifier)
		})
	}
	if _, err := e.person("alice").ProveRecord(t.Context(), &adminv1.ProveRecordRequest{Seq: 1}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("alice: %v, want PERMISSION_DENIED", err)
	}
}
