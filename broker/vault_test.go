package broker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/vault"
	"github.com/writ-dev/writ/internal/vault/vaulttest"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

const vaultPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: orders-vault
    owner: team-orders
    purpose: test
    max_ttl: 15m
    requesters: [spiffe://example.org/reporter]
    issuer: {vault_token: {role: orders}}
    approval: {mode: auto}
`

// recordingIssuer remembers what the real issuer minted, so a test can look
// credentials up at Vault after the broker refused to hand them out.
type recordingIssuer struct {
	broker.Issuer
	mu   sync.Mutex
	refs []approval.CredentialRef
}

func (r *recordingIssuer) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	c, err := r.Issuer.Issue(ctx, g)
	if err == nil {
		r.mu.Lock()
		r.refs = append(r.refs, c.Ref)
		r.mu.Unlock()
	}
	return c, err
}

// vaultIssuer starts a real Vault with a token role "orders" and returns an
// issuer holding a least-privilege token.
func vaultIssuer(t *testing.T) (*vault.TokenIssuer, *vaulttest.Server) {
	t.Helper()
	v := vaulttest.Start(t)
	v.TokenRole(t, "orders", time.Hour)
	v.Policy(t, "writ-broker", vault.IssuerPolicy("orders"))
	iss, err := vault.New(vault.Config{Address: v.Addr, Token: v.Token(t, "writ-broker")})
	if err != nil {
		t.Fatal(err)
	}
	return iss, v
}

// Acceptance: an allowed workload gets a Vault token from the real Vault whose
// TTL is at most max_ttl (looked up by its accessor), with the grant's metadata.
func TestServer_IssueCredential_Vault(t *testing.T) {
	t.Parallel()
	iss, v := vaultIssuer(t)
	e := newEnv(t, envOptions{policy: vaultPolicy, now: time.Now,
		issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: iss}})
	for _, ttl := range []time.Duration{0, 2 * time.Minute} {
		req := &brokerv1.IssueCredentialRequest{Entitlement: "orders-vault"}
		if ttl > 0 {
			req.Ttl = durationpb.New(ttl)
		}
		resp, err := e.client(t, reporter).IssueCredential(context.Background(), req)
		if err != nil {
			t.Fatalf("IssueCredential(ttl %v): %v", ttl, err)
		}
		c := resp.GetCredential()
		got, meta, err := iss.LookupAccessor(context.Background(), c.GetReference())
		if err != nil {
			t.Fatalf("LookupAccessor: %v", err)
		}
		want := 15 * time.Minute
		if ttl > 0 {
			want = ttl
		}
		if got <= 0 || got > want {
			t.Errorf("token ttl at Vault = %v, want in (0, %v]", got, want)
		}
		if meta["grant_id"] != c.GetGrantId() || meta["spiffe_id"] != reporter.String() || meta["entitlement"] != "orders-vault" {
			t.Errorf("token metadata = %v", meta)
		}
		// The secret is a working Vault token.
		self, err := v.ClientWithToken(t, c.GetSecret()).Auth().Token().LookupSelfWithContext(context.Background())
		if err != nil || self == nil {
			t.Errorf("token does not work at Vault: %v", err)
		}
		if strings.Contains(e.logs.String(), c.GetSecret()) {
			t.Error("logs contain the Vault token")
		}
	}
	// Asking for more than max_ttl is refused, and the limit is named.
	_, err := e.client(t, reporter).IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders-vault", Ttl: durationpb.New(20 * time.Minute)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "15m0s") {
		t.Errorf("IssueCredential(20m) = %v, want InvalidArgument naming 15m0s", err)
	}
}

// Acceptance: an injected ledger failure revokes the Vault token just minted
// (its accessor no longer resolves at Vault) and the client gets UNAVAILABLE.
func TestServer_LedgerFailureRevokesVaultToken(t *testing.T) {
	t.Parallel()
	iss, _ := vaultIssuer(t)
	rec := &recordingIssuer{Issuer: iss}
	e := newEnv(t, envOptions{policy: vaultPolicy, now: time.Now, ledger: failingLedger{},
		issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: rec}})
	_, err := e.client(t, reporter).IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders-vault"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("IssueCredential() = %v, want Unavailable", err)
	}
	if len(rec.refs) != 1 {
		t.Fatalf("Vault minted %d tokens, want 1", len(rec.refs))
	}
	if _, _, err := iss.LookupAccessor(context.Background(), rec.refs[0].ID); err == nil {
		t.Errorf("token %s is still valid at Vault after the ledger failed", rec.refs[0].ID)
	}
}

// Permission denied at Vault is the broker's own misconfiguration:
// FAILED_PRECONDITION naming the Vault path, and nothing issued.
func TestServer_VaultPermissionDenied(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	v.TokenRole(t, "orders", time.Hour)
	v.Policy(t, "nothing", `path "secret/*" { capabilities = ["read"] }`)
	iss, err := vault.New(vault.Config{Address: v.Addr, Token: v.Token(t, "nothing")})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{policy: vaultPolicy, now: time.Now,
		issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: iss}})
	_, err = e.client(t, reporter).IssueCredential(context.Background(), &brokerv1.IssueCredentialRequest{Entitlement: "orders-vault"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "auth/token") {
		t.Fatalf("IssueCredential() = %v, want FailedPrecondition naming the Vault path", err)
	}
	if en := e.entries(t); len(en) != 1 || en[0].Action != "grant_failed" {
		t.Errorf("ledger = %+v, want one grant_failed", en)
	}
}
