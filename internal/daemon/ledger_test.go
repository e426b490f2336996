package daemon

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
	"github.com/writ-dev/writ/internal/store/boltstore"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

func TestConfig_ValidateLedger(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  LedgerConfig
		want string
	}{
		{LedgerConfig{}, ""},
		{LedgerConfig{Witnesses: []LedgerWitnessConfig{{Dir: "/srv/witness"}, {Webhook: "https://w.example.org/x"}}}, ""},
		{LedgerConfig{Checkpoint: LedgerCheckpointConfig{EveryRecords: -1}}, "every_records"},
		{LedgerConfig{Checkpoint: LedgerCheckpointConfig{Every: -time.Second}}, "checkpoint.every"},
		{LedgerConfig{Witnesses: []LedgerWitnessConfig{{}}}, "witnesses[0]: set exactly one"},
		{LedgerConfig{Witnesses: []LedgerWitnessConfig{{Dir: "/a", Webhook: "https://x"}}}, "witnesses[0]: set exactly one"},
		{LedgerConfig{Witnesses: []LedgerWitnessConfig{{Dir: "relative"}}}, "absolute"},
		{LedgerConfig{Witnesses: []LedgerWitnessConfig{{Webhook: "ftp://x"}}}, "webhook: must be an http(s) URL"},
	} {
		errs := tc.cfg.validate()
		switch {
		case tc.want == "" && len(errs) > 0:
			t.Errorf("validate(%+v) = %v, want none", tc.cfg, errs)
		case tc.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want)):
			t.Errorf("validate(%+v) = %v, want %q", tc.cfg, errs, tc.want)
		}
	}
}

// The daemon signs ledger checkpoints with its own key (data_dir/ledger.key,
// 0600), serves the key and proofs beside the JWKS, hands a checkpoint to
// the witness directory at shutdown, and serves the newest after a restart;
// the data dir then verifies offline against the witness's file.
func TestDaemon_LedgerCheckpoints(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	brokerID := spiffeid.RequireFromPath(td, "/writd")
	workload := spiffeid.RequireFromPath(td, "/ns/orders/api")
	dir := t.TempDir()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.Issue(brokerID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := devca.WriteSVID(filepath.Join(dir, "svid"), svid, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	keys := spiffetest.NewJWTAuthority(t, td)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	witnessDir := filepath.Join(dir, "witness")
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.JWT.Issuer = "https://writ.example.org"
	cfg.SVID = SVIDConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle,
		JWTBundleFile: write("jwt-bundle.json", keys.BundleJSON(t)), ReloadInterval: time.Second}
	cfg.Policy = write("policy.yaml", []byte(jwtSVIDTestPolicy))
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.JWTSVID = &JWTSVIDConfig{Listen: "127.0.0.1:0", Audience: brokerID.String()}
	cfg.Ledger = LedgerConfig{Witnesses: []LedgerWitnessConfig{{Dir: witnessDir}}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := New(ctx, cfg, Options{})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	shutdown := sync.OnceFunc(m.Shutdown)
	t.Cleanup(shutdown)
	get := func(m *Daemon, path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + m.HTTPAddr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, vkey := get(m, checkpoint.PathKey)
	verifier, err := note.NewVerifier(strings.TrimSpace(vkey))
	if code != 200 || err != nil || verifier.Name() != "writ.example.org/writ-ledger" {
		t.Fatalf("GET key = %d %q (%v), want a verifier key named writ.example.org/writ-ledger", code, vkey, err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, checkpoint.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ledger.key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	cc, err := grpc.NewClient(m.JWTSVIDAddr.String(),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(ca.Bundle(), tlsconfig.AuthorizeID(brokerID)))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := brokerv1.NewBrokerServiceClient(cc)
	claims := spiffetest.JWTClaims{Subject: workload.String(), Audience: []string{brokerID.String()}, Expiry: time.Now().Add(5 * time.Minute)}
	for range 3 {
		ctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+keys.Mint(t, claims))
		if _, err := client.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: "orders"}); err != nil {
			t.Fatalf("IssueCredential() = %v", err)
		}
	}
	if code, body := get(m, checkpoint.PathConsistency+"?old=2&new=1"); code != http.StatusBadRequest {
		t.Errorf("bad consistency query = %d %q, want 400", code, body)
	}
	shutdown()

	// After shutdown: the last checkpoint covers every record and reached
	// the witness; the data dir verifies offline against it.
	store, err := boltstore.Open(filepath.Join(cfg.DataDir, "writ.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(witnessDir, checkpoint.CheckpointsFile))
	if err != nil {
		t.Fatal(err)
	}
	notes, err := audit.SplitNotes(data)
	if err != nil || len(notes) == 0 {
		t.Fatalf("witness file: %d notes, %v", len(notes), err)
	}
	var cps []audit.SignedCheckpoint
	for _, n := range notes {
		cps = append(cps, audit.SignedCheckpoint{Source: "witness", Note: n.Note})
	}
	sum, err := audit.VerifyLog(t.Context(), store, verifier, cps)
	if err != nil || sum.Records < 3 || sum.Newest != int64(sum.Records) {
		t.Errorf("VerifyLog() = %+v, %v; want the newest witnessed checkpoint to cover all %d records", sum, err, sum.Records)
	}
	_ = store.Close()

	// A restarted daemon serves the stored checkpoint at once.
	m2, err := New(ctx, cfg, Options{})
	if err != nil {
		t.Fatalf("New() again = %v", err)
	}
	defer m2.Shutdown()
	code, body := get(m2, checkpoint.PathCheckpoint)
	c, err := audit.OpenCheckpoint([]byte(body), verifier)
	if code != 200 || err != nil || c.Size != int64(sum.Records) {
		t.Errorf("GET checkpoint after restart = %d, %+v, %v; want size %d", code, c, err, sum.Records)
	}
}
