package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/store/boltstore"
)

// auditPeople signs people in by token: the token is the name.
type auditPeople map[string]broker.Person

func (p auditPeople) VerifyPerson(_ context.Context, token string) (broker.Person, error) {
	if person, ok := p[token]; ok {
		return person, nil
	}
	return broker.Person{}, errors.New("unknown token")
}

// auditBroker is a broker with a real bbolt ledger and its admin listener
// (TLS, people by bearer token), as the CLI reaches it.
type auditBroker struct {
	store  *boltstore.Store
	ledger *audit.Log
	flags  []string // --admin, --broker-id, --bundle
	// operatorDir holds an operator's SVID; grpcAddr is the workload
	// listener it calls.
	operatorDir, grpcAddr string
}

// startAuditBroker starts a broker whose ledger holds n records about a
// handful of workloads and people, with awkward characters in reasons.
func startAuditBroker(t *testing.T, n int) *auditBroker {
	t.Helper()
	ca, err := devca.New(agentTD, devca.WithNow(time.Now))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("policy.yaml", []byte(agentPolicy))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store, err := boltstore.Open(filepath.Join(dir, "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ledger, err := audit.New(audit.Config{Store: store, Now: func() time.Time { clock = clock.Add(time.Second); return clock }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		who := fmt.Sprintf("spiffe://example.org/app%d", i%3)
		ev := audit.Event{Action: "grant", Actor: who, Subject: who, Entitlement: "demo", Outcome: "granted",
			GrantID: fmt.Sprintf("g_%d", i), TTL: time.Minute, CredentialKind: "jwt", CredentialRef: fmt.Sprintf("jti-%d", i),
			Expires: clock.Add(time.Minute), Reason: "quote \" comma , newline \n tab \t <html> & ünïcode"}
		if i%5 == 4 {
			ev = audit.Event{Action: "review", Actor: "oidc:https://idp#alice", Subject: who, Entitlement: "demo", Outcome: "approve",
				Details: map[string]string{"request_id": fmt.Sprintf("r_%d", i), "groups": "[dba]"}}
		}
		if _, err := ledger.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	operatorID := spiffeid.RequireFromPath(agentTD, "/ops")
	srv, err := broker.New(broker.Config{Policy: pol, Ledger: ledger, Records: store, Logger: slog.New(slog.DiscardHandler),
		Operators: []spiffeid.ID{operatorID},
		Issuers:   map[approval.CredentialKind]broker.Issuer{approval.KindJWT: &countingIssuer{}},
		People: auditPeople{
			"audra": {Principal: "oidc:https://idp#audra", Groups: []string{"auditors"}},
			"eve":   {Principal: "oidc:https://idp#eve", Groups: []string{"sales"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(agentBrokerID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := devca.WriteSVID(filepath.Join(dir, "broker"), svid, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	src := agentMemSource{SVID: svid, Bundle: ca.Bundle()}
	as := grpc.NewServer(grpc.Creds(credentials.NewTLS(spiffe.ServerTLSConfig(src))),
		grpc.ChainUnaryInterceptor(srv.PersonUnaryInterceptor()), grpc.ChainStreamInterceptor(srv.PersonStreamInterceptor()))
	srv.RegisterAdmin(as)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = as.Serve(lis) }()
	// The workload listener, where operators call with their SVIDs.
	gs := grpc.NewServer(grpc.Creds(spiffe.ServerCredentials(src, tlsconfig.AuthorizeMemberOf(agentTD))),
		grpc.ChainUnaryInterceptor(srv.UnaryInterceptor()), grpc.ChainStreamInterceptor(srv.StreamInterceptor()))
	srv.Register(gs)
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(glis) }()
	opSVID, err := ca.Issue(operatorID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opFiles, err := devca.WriteSVID(filepath.Join(dir, "ops"), opSVID, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		as.Stop()
		gs.Stop()
		_ = store.Close()
	})
	return &auditBroker{store: store, ledger: ledger,
		flags:       []string{"--admin", lis.Addr().String(), "--broker-id", agentBrokerID.String(), "--bundle", files.Bundle},
		operatorDir: filepath.Dir(opFiles.Cert), grpcAddr: glis.Addr().String()}
}

// stored returns the stored records' bytes in order.
func (b *auditBroker) stored(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	if err := b.store.ScanRecords(context.Background(), func(_ uint64, raw []byte) error {
		out = append(out, raw)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// writ runs the CLI as the person whose token is given.
func (b *auditBroker) writ(t *testing.T, token string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("WRIT_TOKEN", token)
	var out, errOut bytes.Buffer
	err := run(context.Background(), append(args, b.flags...), &out, &errOut)
	return out.String(), err
}

// entryFromCSV rebuilds a ledger entry from a CSV row of writ audit export.
func entryFromCSV(row []string) (audit.Entry, error) {
	if len(row) != len(csvHeader) {
		return audit.Entry{}, fmt.Errorf("%d columns, want %d", len(row), len(csvHeader))
	}
	col := func(name string) string { return row[slices.Index(csvHeader, name)] }
	var e audit.Entry
	var err error
	if e.Seq, err = strconv.ParseUint(col("seq"), 10, 64); err != nil {
		return e, err
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, col("time")); err != nil {
		return e, err
	}
	ttl, err := strconv.ParseInt(col("ttl_ns"), 10, 64)
	if err != nil {
		return e, err
	}
	if s := col("expires"); s != "" {
		if e.Expires, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return e, err
		}
	}
	if s := col("details"); s != "" {
		if err := json.Unmarshal([]byte(s), &e.Details); err != nil {
			return e, err
		}
	}
	e.Action, e.Actor, e.Subject, e.Entitlement = col("action"), col("actor"), col("subject"), col("entitlement")
	e.Rule, e.Outcome, e.Reason, e.GrantID = col("rule"), col("outcome"), col("reason"), col("grant_id")
	e.TTL, e.CredentialKind, e.CredentialRef = time.Duration(ttl), col("credential_kind"), col("credential_ref")
	e.PrevHash, e.Hash = col("prev_hash"), col("hash")
	return e, nil
}

// The CLI against a running broker: export (jsonl byte-identical, csv that
// parses back to the same records), search with paging, snapshot, and an
// offline export of the snapshot. Not parallel: it sets WRIT_TOKEN.
func TestAuditReadCommands(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	b := startAuditBroker(t, 300)
	stored := b.stored(t)
	var want bytes.Buffer
	for _, r := range stored {
		want.Write(r)
		want.WriteByte('\n')
	}

	t.Run("export jsonl is the stored bytes", func(t *testing.T) {
		out, err := b.writ(t, "audra", "audit", "export")
		if err != nil {
			t.Fatal(err)
		}
		if out != want.String() {
			t.Errorf("export differs from the stored records (%d vs %d bytes)", len(out), want.Len())
		}
	})

	t.Run("export to a file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.jsonl")
		if _, err := b.writ(t, "audra", "audit", "export", "--out", path); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Errorf("file = %d bytes, %v; want the stored records", len(got), err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
	})

	t.Run("export filtered", func(t *testing.T) {
		out, err := b.writ(t, "audra", "audit", "export", "--kind", "review", "--from-seq", "10", "--to-seq", "30")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 5 { // reviews are every fifth record: 10, 15, 20, 25, 30
			t.Fatalf("%d lines, want 5: %q", len(lines), out)
		}
		for _, l := range lines {
			e, err := audit.Decode([]byte(l))
			if err != nil || e.Action != "review" || e.Seq < 10 || e.Seq > 30 || !bytes.Equal([]byte(l), stored[e.Seq-1]) {
				t.Errorf("line %q: %v", l, err)
			}
		}
	})

	t.Run("export csv round-trips", func(t *testing.T) {
		out, err := b.writ(t, "audra", "audit", "export", "--format", "csv")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rows[0], csvHeader) || len(rows) != len(stored)+1 {
			t.Fatalf("header %v and %d rows, want %v and %d", rows[0], len(rows), csvHeader, len(stored)+1)
		}
		for i, row := range rows[1:] {
			e, err := entryFromCSV(row)
			if err != nil {
				t.Fatalf("row %d: %v", i+1, err)
			}
			raw, err := audit.Encode(e)
			if err != nil || !bytes.Equal(raw, stored[i]) {
				t.Fatalf("row %d does not rebuild the stored record: %v\n%s\n%s", i+1, err, raw, stored[i])
			}
		}
	})

	t.Run("search pages", func(t *testing.T) {
		var seqs []uint64
		token := ""
		for range 100 {
			args := []string{"audit", "search", "--identity", "spiffe://example.org/app1", "--limit", "7", "-o", "json"}
			if token != "" {
				args = append(args, "--page-token", token)
			}
			out, err := b.writ(t, "audra", args...)
			if err != nil {
				t.Fatal(err)
			}
			var page struct {
				Records []struct {
					Seq     uint64 `json:"seq"`
					Subject string `json:"subject"`
				} `json:"records"`
				Next string `json:"next_page_token"`
			}
			if err := json.Unmarshal([]byte(out), &page); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			for _, r := range page.Records {
				if r.Subject != "spiffe://example.org/app1" {
					t.Errorf("record %d is about %s", r.Seq, r.Subject)
				}
				seqs = append(seqs, r.Seq)
			}
			if token = page.Next; token == "" {
				break
			}
		}
		if len(seqs) != 100 || !slices.IsSortedFunc(seqs, func(a, b uint64) int { return int(b) - int(a) }) {
			t.Errorf("search returned %d records (want 100, newest first): %v", len(seqs), seqs)
		}
	})

	t.Run("search table", func(t *testing.T) {
		out, err := b.writ(t, "audra", "audit", "search", "--action", "review", "--limit", "2")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "SEQ") || !strings.Contains(out, "300") || !regexp.MustCompile(`more: add --page-token \S+`).MatchString(out) {
			t.Errorf("table output:\n%s", out)
		}
	})

	t.Run("snapshot, then offline export of it", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "writ.db")
		out, err := b.writ(t, "audra", "audit", "snapshot", "--out", path)
		if err != nil || !strings.Contains(out, "ledger ok: 300 records") {
			t.Fatalf("snapshot = %q, %v", out, err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("snapshot mode %v, want 0600", fi.Mode().Perm())
		}
		var off bytes.Buffer
		if err := run(context.Background(), []string{"audit", "export", "--data-dir", dir}, &off, &off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(off.Bytes(), want.Bytes()) {
			t.Errorf("offline export of the snapshot differs from the stored records")
		}
	})

	t.Run("prove", func(t *testing.T) {
		if _, err := b.writ(t, "audra", "audit", "prove", "--seq", "5"); exitCode(err) != exitRejected {
			t.Errorf("prove before any checkpoint = %v (exit %d), want exit %d", err, exitCode(err), exitRejected)
		}
		skey, vkey, err := audit.GenerateLedgerKey(rand.Reader, "writ.test/ledger")
		if err != nil {
			t.Fatal(err)
		}
		signer, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := checkpoint.New(t.Context(), checkpoint.Config{Store: b.store, Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cp.SignNow(t.Context()); err != nil {
			t.Fatal(err)
		}
		_ = cp.Close(t.Context())
		keyFile := filepath.Join(t.TempDir(), "ledger.pub")
		if err := os.WriteFile(keyFile, []byte(vkey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := b.writ(t, "audra", "audit", "prove", "--grant", "g_7", "--key", keyFile)
		if err != nil || !strings.Contains(out, "proof ok: record 8 is in the tree of size 300, and the checkpoint is signed by writ.test/ledger") ||
			!strings.Contains(out, string(stored[7])) {
			t.Errorf("prove --grant g_7 = %v:\n%s", err, out)
		}
		out, err = b.writ(t, "audra", "audit", "prove", "--seq", "300")
		if err != nil || !strings.Contains(out, "signature NOT checked") {
			t.Errorf("prove --seq 300 without a key = %v:\n%s", err, out)
		}
		out, err = b.writ(t, "audra", "audit", "prove", "--seq", "1", "-o", "json")
		var res struct {
			Record    string   `json:"record"`
			TreeSize  int64    `json:"tree_size"`
			Proof     []string `json:"proof"`
			Signature bool     `json:"signature_checked"`
		}
		if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.Record != string(stored[0]) || res.TreeSize != 300 || len(res.Proof) == 0 {
			t.Errorf("prove -o json = %v:\n%s", err, out)
		}
		_, otherKey, _ := audit.GenerateLedgerKey(rand.Reader, "writ.test/ledger")
		if err := os.WriteFile(keyFile, []byte(otherKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := b.writ(t, "audra", "audit", "prove", "--seq", "2", "--key", keyFile); !errors.Is(err, errVerify) {
			t.Errorf("prove with another key = %v, want a verification failure", err)
		}
	})

	t.Run("operator with an SVID", func(t *testing.T) {
		out, err := b.writ(t, "", "audit", "export", "--svid-dir", b.operatorDir, "--broker", b.grpcAddr)
		if err != nil || out != want.String() {
			t.Errorf("export as operator = %v, %d bytes; want the stored records", err, len(out))
		}
		out, err = b.writ(t, "", "audit", "search", "--svid-dir", b.operatorDir, "--broker", b.grpcAddr, "--limit", "1", "-o", "json")
		if err != nil || !strings.Contains(out, `"seq": 300`) {
			t.Errorf("search as operator = %v:\n%s", err, out)
		}
		if _, err := b.writ(t, "", "audit", "search", "--svid-dir", b.operatorDir+"-none", "--broker", b.grpcAddr); err == nil {
			t.Error("search with a missing SVID dir succeeded")
		}
	})

	t.Run("not an auditor", func(t *testing.T) {
		for _, args := range [][]string{{"audit", "export"}, {"audit", "search"}, {"audit", "prove", "--seq", "1"}, {"audit", "snapshot", "--out", filepath.Join(t.TempDir(), "x.db")}} {
			_, err := b.writ(t, "eve", args...)
			if exitCode(err) != exitDenied || !strings.Contains(friendly(err), "auditor") {
				t.Errorf("writ %v as eve = %v (exit %d), want permission denied (exit %d)", args, err, exitCode(err), exitDenied)
			}
		}
	})
}

// Offline reads of a damaged data directory report it; they never panic.
func TestAuditExport_DamagedDataDir(t *testing.T) {
	t.Parallel()
	good := newLedger(t, 2000)
	raw, err := os.ReadFile(filepath.Join(good, "writ.db"))
	if err != nil {
		t.Fatal(err)
	}
	for name, damage := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)*2/3] },
		"garbage":   func(b []byte) []byte { return bytes.Repeat([]byte("x"), len(b)) },
		"empty":     func([]byte) []byte { return nil },
		"scribbled": func(b []byte) []byte {
			b = bytes.Clone(b)
			for i := 2 * 16384; i < len(b); i += 61 {
				b[i] ^= 0xff
			}
			return b
		},
	} {
		if name == "scribbled" && raceEnabled {
			t.Logf("%s: runs without -race only (checkptr aborts inside bbolt)", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "writ.db"), damage(raw), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"audit", "export", "--data-dir", dir, "--format", "csv"},
				{"audit", "verify", "--data-dir", dir},
			} {
				var out bytes.Buffer
				err := run(context.Background(), args, &out, &out)
				if err == nil {
					t.Errorf("writ %v on a %s file succeeded: %.300s", args, name, out.String())
				}
			}
		})
	}
}

func TestAuditExport_Usage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"audit", "export", "--format", "xml"},
		{"audit", "snapshot"},
		{"audit", "search", "-o", "yaml"},
	} {
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if exitCode(err) != exitUsage {
			t.Errorf("writ %v = %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
	err := run(context.Background(), []string{"audit", "export", "--since", "yesterday"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Error("--since yesterday accepted")
	}
}
