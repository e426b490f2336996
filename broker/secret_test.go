package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/pgtest"
	"github.com/writ-dev/writ/internal/testenv"
	"github.com/writ-dev/writ/internal/vault"
	"github.com/writ-dev/writ/internal/vault/vaulttest"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

const secretPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: orders-db
    owner: team-orders
    purpose: read orders
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {vault_secret: {path: database/creds/orders-ro}}
    approval: {mode: auto}
  - name: orders-db-short
    owner: team-orders
    purpose: short-lived logins
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {vault_secret: {path: database/creds/orders-short}}
    approval: {mode: auto}
  - name: orders-db-approved
    owner: team-orders
    purpose: read orders after approval
    max_ttl: 10m
    requesters: [spiffe://example.org/ns/orders/*]
    issuer: {vault_secret: {path: database/creds/orders-ro}}
    approval: {mode: approvers, stages: [{groups: [dba], min: 1}], window: 1h}
`

// secretEnv is a broker whose vault_secret issuer mints PostgreSQL logins
// through a real Vault, reached through a proxy the test can cut.
type secretEnv struct {
	*apprEnv
	pg    *pgtest.Server
	proxy *testenv.Proxy
	// vaultClock is the Vault client's clock: its circuit breaker's
	// cooldown passes when the test advances it.
	vaultClock *clock
}

func newSecretEnv(t *testing.T) *secretEnv {
	t.Helper()
	pg := pgtest.Start(t)
	pg.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY)`)
	v := vaulttest.Start(t)
	v.PostgresEngine(t, pg.Addr, pg.SuperUser, pg.Password,
		vaulttest.DBRole{Name: "orders-ro", DefaultTTL: "5m", MaxTTL: "10m"},
		vaulttest.DBRole{Name: "orders-short", DefaultTTL: "3s", MaxTTL: "1m"})
	hcl, err := vault.RecipePolicy(
		approval.Recipe{Kind: approval.KindVaultSecret, Path: "database/creds/orders-ro"},
		approval.Recipe{Kind: approval.KindVaultSecret, Path: "database/creds/orders-short"})
	if err != nil {
		t.Fatal(err)
	}
	v.Policy(t, "writ-secrets", hcl)
	proxy := testenv.StartProxy(t, strings.TrimPrefix(v.Addr, "http://"))
	vaultClock := &clock{t: time.Now()}
	vc, err := vault.NewClient(context.Background(), vault.ClientConfig{
		Address: "http://" + proxy.Addr(), Timeout: time.Second, Now: vaultClock.Now,
		Auth:    vault.AuthConfig{Token: v.Token(t, "writ-secrets")},
		Breaker: vault.BreakerConfig{Failures: 2, Cooldown: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.Close() })
	iss, err := vault.NewSecretIssuer(vault.SecretIssuerConfig{Client: vc})
	if err != nil {
		t.Fatal(err)
	}
	e := newApprEnv(t, apprOptions{policy: secretPolicy, clock: &clock{t: time.Now()},
		issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultSecret: iss}})
	return &secretEnv{apprEnv: e, pg: pg, proxy: proxy, vaultClock: vaultClock}
}

// login tries the credential against PostgreSQL with SELECT 1.
func (e *secretEnv) login(c *brokerv1.Credential) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.pg.Login(ctx, "postgres", c.GetData()["username"], c.GetData()["password"])
}

// waitLoginFails polls until the login is refused. Vault revokes the login
// in PostgreSQL on its own schedule (lease revocation or its real TTL): a
// real external process, no clock to inject.
func (e *secretEnv) waitLoginFails(t *testing.T, c *brokerv1.Credential, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, "login "+c.GetData()["username"]+" to be refused", func() bool { return e.login(c) != nil })
}

// Acceptance: a workload gets a PostgreSQL login and runs SELECT 1 with it;
// after ReleaseCredential the login fails.
func TestSecret_LoginThenRelease(t *testing.T) {
	t.Parallel()
	e := newSecretEnv(t)
	w := e.workload(orderAPI)
	c, err := issue(w, "orders-db", 0)
	if err != nil {
		t.Fatalf("IssueCredential: %v", err)
	}
	if c.GetKind() != brokerv1.CredentialKind_CREDENTIAL_KIND_VAULT_SECRET || c.GetData()["username"] == "" || !strings.HasPrefix(c.GetReference(), "database/creds/orders-ro/") {
		t.Fatalf("credential = kind %v ref %q data keys %d", c.GetKind(), c.GetReference(), len(c.GetData()))
	}
	if err := e.login(c); err != nil {
		t.Fatalf("SELECT 1 with the minted login: %v", err)
	}
	// Someone else cannot release it.
	if _, err := e.workload(spiffeIDOther(t)).ReleaseCredential(context.Background(), &brokerv1.ReleaseCredentialRequest{GrantId: c.GetGrantId()}); status.Code(err) != codes.NotFound {
		t.Errorf("release by another workload = %v, want NotFound", err)
	}
	if _, err := w.ReleaseCredential(context.Background(), &brokerv1.ReleaseCredentialRequest{GrantId: c.GetGrantId()}); err != nil {
		t.Fatalf("ReleaseCredential: %v", err)
	}
	e.waitLoginFails(t, c, 10*time.Second)
	if _, err := w.ReleaseCredential(context.Background(), &brokerv1.ReleaseCredentialRequest{GrantId: c.GetGrantId()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second release = %v, want FailedPrecondition (already ended)", err)
	}
	if countPrefix(e.actions(), "release:released") != 1 {
		t.Errorf("ledger = %v, want one release", e.actions())
	}
}

// Acceptance: revoking the approval kills the login minted under it.
func TestSecret_RevokeApprovalKillsLogin(t *testing.T) {
	t.Parallel()
	e := newSecretEnv(t)
	w := e.workload(orderAPI)
	r := requestAccess(t, w, "orders-db-approved", time.Hour)
	if _, err := approve(e.apprEnv, "alice", r.GetId()); err != nil {
		t.Fatal(err)
	}
	c, err := issue(w, "orders-db-approved", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.login(c); err != nil {
		t.Fatalf("SELECT 1: %v", err)
	}
	resp, err := e.person("alice").RevokeRequest(context.Background(), &adminv1.RevokeRequestRequest{Id: r.GetId(), Reason: "done"})
	if err != nil || len(resp.GetResults()) != 1 || resp.GetResults()[0].GetOutcome() != "revoked" {
		t.Fatalf("revoke = %v, %v", resp, err)
	}
	e.waitLoginFails(t, c, 10*time.Second)
}

// Acceptance: after its TTL the login fails; before that it can be renewed
// within the entitlement's limit, never beyond.
func TestSecret_ExpiryAndRenew(t *testing.T) {
	t.Parallel()
	e := newSecretEnv(t)
	w := e.workload(orderAPI)
	short, err := issue(w, "orders-db-short", 0)
	if err != nil {
		t.Fatal(err)
	}
	if ttl := time.Until(short.GetExpiresAt().AsTime()); ttl > 4*time.Second {
		t.Errorf("lease ttl %v, want the role's 3s", ttl)
	}
	renewed, err := issue(w, "orders-db-short", 0)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := w.RenewCredential(context.Background(), &brokerv1.RenewCredentialRequest{GrantId: renewed.GetGrantId(), Ttl: durationpb.New(30 * time.Second)})
	if err != nil {
		t.Fatalf("RenewCredential: %v", err)
	}
	if left := time.Until(resp.GetExpiresAt().AsTime()); left < 20*time.Second || left > 31*time.Second {
		t.Errorf("renewed lease has %v left, want about 30s", left)
	}
	if _, err := w.RenewCredential(context.Background(), &brokerv1.RenewCredentialRequest{GrantId: renewed.GetGrantId(), Ttl: durationpb.New(11 * time.Minute)}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("renew past max_ttl = %v, want InvalidArgument", err)
	}
	e.waitLoginFails(t, short, 30*time.Second)
	if err := e.login(renewed); err != nil {
		t.Errorf("renewed login stopped working early: %v", err)
	}
	if countPrefix(e.actions(), "renew:renewed") != 1 {
		t.Errorf("ledger = %v, want one renewal", e.actions())
	}
}

// Acceptance (T7): Vault unreachable → UNAVAILABLE quickly and no ledger
// record claims a credential; Vault back → the next request works without a
// restart.
func TestSecret_VaultUnreachableThenBack(t *testing.T) {
	t.Parallel()
	e := newSecretEnv(t)
	w := e.workload(orderAPI)
	e.proxy.Down()
	for range 3 {
		start := time.Now()
		_, err := issue(w, "orders-db", 0)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("IssueCredential with Vault down = %v, want Unavailable", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("failure took %v, want it quick", d)
		}
	}
	if n := countPrefix(e.actions(), "grant:"); n != 0 {
		t.Errorf("ledger claims %d grants while Vault was down: %v", n, e.actions())
	}
	e.proxy.Up()
	// Each attempt first moves the Vault client's clock past the breaker's
	// cooldown (500ms plus at most half of it in jitter), so the attempt is
	// the breaker's probe; the poll only waits for the proxy's new
	// connections to Vault.
	var c *brokerv1.Credential
	testenv.Eventually(t, 15*time.Second, "a credential after Vault came back", func() bool {
		e.vaultClock.Advance(time.Second)
		var err error
		c, err = issue(w, "orders-db", 0)
		return err == nil
	})
	if err := e.login(c); err != nil {
		t.Fatalf("login after recovery: %v", err)
	}
}
