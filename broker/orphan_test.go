package broker_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/pgtest"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/vault"
	"github.com/writ-dev/writ/internal/vault/vaulttest"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

const orphanPolicy = `version: 1
trust_domain: example.org
entitlements:
  - name: orders-vault
    owner: team-orders
    purpose: test
    max_ttl: 15m
    requesters: [spiffe://example.org/reporter]
    issuer: {vault_token: {role: orders}}
    approval: {mode: auto}
  - name: orders-db
    owner: team-orders
    purpose: test
    max_ttl: 15m
    requesters: [spiffe://example.org/reporter]
    issuer: {vault_secret: {path: database/creds/orders-ro}}
    approval: {mode: auto}
`

// finderIssuer is a Vault issuer that remembers what it minted, so the test
// can check at Vault what happened to it; it keeps the issuer's
// OrphanFinder.
type finderIssuer interface {
	broker.Issuer
	broker.OrphanFinder
}

type recordingFinder struct {
	finderIssuer
	mu    sync.Mutex
	creds []approval.Credential
}

func (r *recordingFinder) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	c, err := r.finderIssuer.Issue(ctx, g)
	if err == nil {
		r.mu.Lock()
		r.creds = append(r.creds, c)
		r.mu.Unlock()
	}
	return c, err
}

// orphanEnv is a real Vault (token role, PostgreSQL-backed database role)
// and the data file of a broker that is "killed" and started again.
type orphanEnv struct {
	v      *vaulttest.Server
	token  string // the broker's Vault token
	dbPath string
	pol    *approval.Policy
	clock  *clock
}

func newOrphanEnv(t *testing.T, reconcilerPolicy bool) *orphanEnv {
	t.Helper()
	v := vaulttest.Start(t)
	pg := pgtest.Start(t)
	v.TokenRole(t, "orders", time.Hour)
	v.DatabaseRoles(t, pg.Addr, pg.SuperUser, pg.Password, map[string][2]time.Duration{"orders-ro": {5 * time.Minute, 10 * time.Minute}})
	recipes := []approval.Recipe{{Kind: approval.KindVaultToken, Role: "orders"}, {Kind: approval.KindVaultSecret, Path: "database/creds/orders-ro"}}
	hcl, err := vault.RecipePolicy(recipes...)
	if err != nil {
		t.Fatal(err)
	}
	if reconcilerPolicy {
		hcl += "\n" + vault.ReconcilerPolicy("database/creds/orders-ro")
	}
	v.Policy(t, "writ-broker", hcl)
	pol, err := policy.Parse("policy.yaml", []byte(orphanPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return &orphanEnv{v: v, token: v.Token(t, "writ-broker"), dbPath: filepath.Join(t.TempDir(), "writ.db"), pol: pol,
		clock: &clock{t: time.Now()}}
}

// broker opens the data file and builds a broker over it, with fresh Vault
// issuers. close closes the store (the process "dies").
type orphanBroker struct {
	srv    *broker.Server
	store  *boltstore.Store
	tokens *recordingFinder
	leases *recordingFinder
}

func (e *orphanEnv) start(t *testing.T, now func() time.Time) *orphanBroker {
	t.Helper()
	store, err := boltstore.Open(e.dbPath, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	c, err := vault.NewClient(t.Context(), vault.ClientConfig{Address: e.v.Addr, Auth: vault.AuthConfig{Token: e.token}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	tok, err := vault.NewTokenIssuerWithClient(c)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := vault.NewSecretIssuer(vault.SecretIssuerConfig{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := audit.New(audit.Config{Store: store, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	b := &orphanBroker{store: store, tokens: &recordingFinder{finderIssuer: tok}, leases: &recordingFinder{finderIssuer: sec}}
	b.srv, err = broker.New(broker.Config{
		Policy:  e.pol,
		Issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: b.tokens, approval.KindVaultSecret: b.leases},
		Ledger:  ledger, Grants: store, Intents: store, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// crash stops every pipeline of b right after Vault minted, then closes its
// store, as kill -9 at that moment would leave the data file.
func (b *orphanBroker) crashAfterMint(t *testing.T, entitlement string) approval.Credential {
	t.Helper()
	broker.SetCrashAfterMint(b.srv, func(approval.Grant) bool { return true })
	ctx := broker.AsWorkload(t.Context(), reporter)
	_, err := b.srv.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: entitlement, Ttl: durationpb.New(10 * time.Minute)})
	if err == nil {
		t.Fatal("IssueCredential succeeded through the crash hook")
	}
	all := append(append([]approval.Credential{}, b.tokens.creds...), b.leases.creds...)
	if len(all) != 1 {
		t.Fatalf("Vault minted %d credentials, want 1", len(all))
	}
	intents, err := b.store.Intents(t.Context())
	if err != nil || len(intents) != 1 {
		t.Fatalf("intents after the crash = %v, %v; want the one intent", intents, err)
	}
	if err := b.store.Close(); err != nil {
		t.Fatal(err)
	}
	return all[0]
}

func storeEntries(t *testing.T, s *boltstore.Store) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	if err := s.ScanRecords(t.Context(), func(_ uint64, raw []byte) error {
		e, err := audit.Decode(raw)
		out = append(out, e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(t.Context(), s); err != nil {
		t.Fatalf("ledger does not verify: %v", err)
	}
	return out
}

// alive reports whether Vault still honours the credential.
func (e *orphanEnv) alive(t *testing.T, c approval.Credential) bool {
	t.Helper()
	switch c.Ref.Kind {
	case approval.KindVaultToken:
		_, err := e.v.ClientWithToken(t, string(c.Secret)).Auth().Token().LookupSelfWithContext(t.Context())
		return err == nil
	default:
		s, err := e.v.Client.Logical().WriteWithContext(t.Context(), "sys/leases/lookup", map[string]any{"lease_id": c.Ref.ID})
		return err == nil && s != nil
	}
}

// T1: kill -9 after Vault minted a token or a lease and before the ledger
// recorded it. The client got nothing; the restarted broker's reconciler
// finds the credential from the durable intent, revokes it at Vault and
// records orphan_revoked.
func TestReconcile_CrashAfterMint_RevokesOrphan(t *testing.T) {
	t.Parallel()
	e := newOrphanEnv(t, true)
	for _, ent := range []string{"orders-vault", "orders-db"} {
		t.Run(ent, func(t *testing.T) {
			// A grant recorded before the crash must survive the reconciler.
			before := e.start(t, time.Now)
			ctx := broker.AsWorkload(t.Context(), reporter)
			kept, err := before.srv.IssueCredential(ctx, &brokerv1.IssueCredentialRequest{Entitlement: ent, Ttl: durationpb.New(10 * time.Minute)})
			if err != nil {
				t.Fatalf("IssueCredential before the crash: %v", err)
			}
			before.tokens.creds, before.leases.creds = nil, nil
			orphan := before.crashAfterMint(t, ent)
			if !e.alive(t, orphan) {
				t.Fatal("the orphan is not live at Vault before the reconciler ran; the test proves nothing")
			}

			after := e.start(t, time.Now)
			rep, err := after.srv.ReconcileIntents(t.Context())
			if err != nil {
				t.Fatalf("ReconcileIntents: %v", err)
			}
			if rep.Revoked != 1 || rep.Pending != 0 {
				t.Errorf("report = %+v, want 1 revoked, 0 pending", rep)
			}
			if e.alive(t, orphan) {
				t.Errorf("orphan %s %s is still live at Vault after reconciling", orphan.Ref.Kind, orphan.Ref.ID)
			}
			keptRef := approval.CredentialRef{Kind: orphan.Ref.Kind, ID: kept.GetCredential().GetReference()}
			if keptRef.ID == "" {
				t.Fatal("the recorded credential has no reference")
			}
			if orphan.Ref.Kind == approval.KindVaultSecret {
				if !e.alive(t, approval.Credential{Ref: keptRef}) {
					t.Error("the reconciler revoked a recorded lease")
				}
			}
			var found bool
			for _, en := range storeEntries(t, after.store) {
				if en.Action == broker.ActionOrphanRevoked && en.Outcome == "revoked" && en.CredentialRef == orphan.Ref.ID {
					found = true
				}
				if en.Action == broker.ActionGrant && en.CredentialRef == orphan.Ref.ID {
					t.Errorf("the orphan has a grant record: %+v", en)
				}
			}
			if !found {
				t.Errorf("no orphan_revoked record for %s", orphan.Ref.ID)
			}
			if left, _ := after.store.Intents(t.Context()); len(left) != 0 {
				t.Errorf("intents left after reconciling: %+v", left)
			}
			// A second pass finds nothing more.
			if rep, err := after.srv.ReconcileIntents(t.Context()); err != nil || rep != (broker.ReconcileReport{}) {
				t.Errorf("second pass = %+v, %v; want nothing to do", rep, err)
			}
			if err := after.store.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// T1, T8: where Vault gives no way to find the credential (the broker's
// policy cannot list accessors or leases), the intent stays and the
// credential is bounded: a token is non-renewable with explicit_max_ttl
// at most the grant's TTL, a lease expires no later than the grant. Past
// the bound the reconciler clears the intent and records that it could not
// search (outcome "expired").
func TestReconcile_NoSearch_BoundedByTTL(t *testing.T) {
	t.Parallel()
	e := newOrphanEnv(t, false)
	for _, ent := range []string{"orders-vault", "orders-db"} {
		t.Run(ent, func(t *testing.T) {
			e.clock = &clock{t: time.Now()}
			b := e.start(t, time.Now)
			orphan := b.crashAfterMint(t, ent)
			after := e.start(t, e.clock.Now)
			intents, err := after.store.Intents(t.Context())
			if err != nil || len(intents) != 1 {
				t.Fatalf("intents = %v, %v", intents, err)
			}
			in := intents[0]
			if got := in.NotAfter.Sub(in.CreatedAt); got > 10*time.Minute+time.Second {
				t.Errorf("intent bound %s after its creation, want at most the grant's 10m", got)
			}

			// The bound, as Vault itself states it.
			switch orphan.Ref.Kind {
			case approval.KindVaultToken:
				s, err := e.v.Client.Auth().Token().LookupAccessorWithContext(t.Context(), orphan.Ref.ID)
				if err != nil {
					t.Fatal(err)
				}
				maxTTL, _ := s.Data["explicit_max_ttl"].(jsonNumber)
				if n, _ := maxTTL.Int64(); n <= 0 || n > 600 {
					t.Errorf("token explicit_max_ttl = %v, want 1..600 seconds", s.Data["explicit_max_ttl"])
				}
				if s.Data["renewable"] != false {
					t.Errorf("token renewable = %v, want false", s.Data["renewable"])
				}
				if _, err := e.v.ClientWithToken(t, string(orphan.Secret)).Auth().Token().RenewSelfWithContext(t.Context(), 3600); err == nil {
					s, _ := e.v.Client.Auth().Token().LookupAccessorWithContext(t.Context(), orphan.Ref.ID)
					if exp := expireTime(t, s); exp.After(in.NotAfter.Add(5 * time.Second)) {
						t.Errorf("the token renewed itself past the bound: expires %s, bound %s", exp, in.NotAfter)
					}
				}
				if exp := expireTime(t, s); exp.After(in.NotAfter.Add(5 * time.Second)) {
					t.Errorf("token expires %s, after the intent's bound %s", exp, in.NotAfter)
				}
			default:
				s, err := e.v.Client.Logical().WriteWithContext(t.Context(), "sys/leases/lookup", map[string]any{"lease_id": orphan.Ref.ID})
				if err != nil {
					t.Fatal(err)
				}
				if exp := expireTime(t, s); exp.After(in.NotAfter.Add(5 * time.Second)) {
					t.Errorf("lease expires %s, after the intent's bound %s", exp, in.NotAfter)
				}
			}

			rep, err := after.srv.ReconcileIntents(t.Context())
			if err != nil || rep.Pending != 1 || rep.Revoked != 0 {
				t.Fatalf("before the bound: report %+v, %v; want the intent pending", rep, err)
			}
			e.clock.Advance(11*time.Minute + 2*time.Minute)
			if rep, err = after.srv.ReconcileIntents(t.Context()); err != nil || rep.Cleared != 1 {
				t.Fatalf("after the bound: report %+v, %v; want it cleared", rep, err)
			}
			var found bool
			for _, en := range storeEntries(t, after.store) {
				found = found || (en.Action == broker.ActionOrphanRevoked && en.Outcome == "expired" && en.GrantID == in.GrantID)
			}
			if !found {
				t.Error("no orphan_revoked/expired record")
			}
			if err := after.store.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

type jsonNumber = interface{ Int64() (int64, error) }

func expireTime(t *testing.T, s *api.Secret) time.Time {
	t.Helper()
	str, _ := s.Data["expire_time"].(string)
	exp, err := time.Parse(time.RFC3339Nano, str)
	if err != nil {
		t.Fatalf("expire_time %q: %v", str, err)
	}
	return exp
}
