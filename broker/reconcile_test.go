package broker_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/policy"
	"github.com/writ-dev/writ/internal/store/boltstore"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// flakyVault is a fakeVault whose searches and revocations can fail, and
// whose Issue can be held until released.
type flakyVault struct {
	*fakeVault
	searchErr, revokeErr atomic.Pointer[error]
	overGrant            atomic.Bool   // Issue returns credentials that outlive their grant by an hour
	hold                 chan struct{} // if set, Issue waits for it after minting
	minted               chan struct{}
}

func (v *flakyVault) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	c, err := v.fakeVault.Issue(ctx, g)
	if v.overGrant.Load() {
		c.Ref.Expires = c.Ref.Expires.Add(time.Hour)
	}
	if v.hold != nil {
		v.minted <- struct{}{}
		<-v.hold
	}
	return c, err
}

func (v *flakyVault) Revoke(ctx context.Context, ref approval.CredentialRef) error {
	if p := v.revokeErr.Load(); p != nil {
		return *p
	}
	return v.fakeVault.Revoke(ctx, ref)
}

func (v *flakyVault) FindOrphans(ctx context.Context, in []approval.Intent, rec func(string) bool) (map[string][]approval.CredentialRef, error) {
	if p := v.searchErr.Load(); p != nil {
		return nil, *p
	}
	return v.fakeVault.FindOrphans(ctx, in, rec)
}

type reconcileEnv struct {
	srv   *broker.Server
	store *boltstore.Store
	vault *flakyVault
	clock *clock
}

func newReconcileEnv(t *testing.T) *reconcileEnv {
	t.Helper()
	autoOnly := modelPolicy[:strings.Index(modelPolicy, "  - name: m-appr")]
	pol, err := policy.Parse("policy.yaml", []byte(autoOnly))
	if err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "writ.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e := &reconcileEnv{store: store, vault: &flakyVault{fakeVault: &fakeVault{live: map[string]string{}}}, clock: &clock{t: fixedNow}}
	ledger, err := audit.New(audit.Config{Store: store, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = broker.New(broker.Config{Policy: pol, Issuers: map[approval.CredentialKind]broker.Issuer{approval.KindVaultToken: e.vault},
		Ledger: ledger, Grants: store, Intents: store, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *reconcileEnv) orphanRecords(t *testing.T) []string {
	t.Helper()
	var out []string
	if err := e.store.ScanRecords(context.Background(), func(_ uint64, raw []byte) error {
		en, err := audit.Decode(raw)
		if en.Action == broker.ActionOrphanRevoked {
			out = append(out, en.Outcome)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// T1: the reconciler leaves a pipeline that is still minting alone, and
// clears its intent once the grant is recorded.
func TestReconcile_LeavesInFlightAlone(t *testing.T) {
	e := newReconcileEnv(t)
	e.vault.hold, e.vault.minted = make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := e.srv.IssueCredential(broker.AsWorkload(context.Background(), orderAPI), &brokerv1.IssueCredentialRequest{Entitlement: "m-auto"})
		done <- err
	}()
	<-e.vault.minted
	rep, err := e.srv.ReconcileIntents(context.Background())
	if err != nil || rep.Pending != 1 || rep.Revoked != 0 {
		t.Errorf("while minting: report %+v, %v; want the intent pending", rep, err)
	}
	close(e.vault.hold)
	if err := <-done; err != nil {
		t.Fatalf("IssueCredential: %v", err)
	}
	if len(e.vault.liveRefs()) != 1 {
		t.Errorf("live credentials = %v, want the one delivered", e.vault.liveRefs())
	}
	if left, _ := e.store.Intents(context.Background()); len(left) != 0 {
		t.Errorf("intents after the grant = %+v, want none", left)
	}
}

// T1: a crash after the ledger record and before the intent was cleared
// leaves a recorded credential: the reconciler clears the intent and
// revokes nothing.
func TestReconcile_RecordedGrantIsNotAnOrphan(t *testing.T) {
	e := newReconcileEnv(t)
	ctx := context.Background()
	in := approval.Intent{GrantID: "g_rec", Recipe: approval.Recipe{Kind: approval.KindVaultToken, Role: "orders"}, Principal: approval.Principal(orderAPI.String()),
		Entitlement: "m-auto", CreatedAt: fixedNow, NotAfter: fixedNow.Add(10 * time.Minute)}
	if err := e.store.BeginIntent(ctx, in); err != nil {
		t.Fatal(err)
	}
	cred, _ := e.vault.Issue(ctx, approval.Grant{ID: "g_rec", Expires: in.NotAfter})
	ledger, _ := audit.New(audit.Config{Store: e.store, Now: e.clock.Now})
	if _, err := ledger.Append(ctx, audit.Event{Action: broker.ActionGrant, Outcome: "granted", Actor: in.Principal.String(), GrantID: "g_rec",
		CredentialKind: string(approval.KindVaultToken), CredentialRef: cred.Ref.ID, Expires: cred.Ref.Expires}); err != nil {
		t.Fatal(err)
	}
	rep, err := e.srv.ReconcileIntents(ctx)
	if err != nil || rep.Recorded != 1 || rep.Revoked != 0 {
		t.Errorf("report %+v, %v; want 1 recorded, 0 revoked", rep, err)
	}
	if len(e.vault.liveRefs()) != 1 {
		t.Error("the reconciler revoked a recorded credential")
	}
}

// T1, T8: a search that fails, or a revocation that fails, leaves the
// intent for the next pass; past the bound, an intent that could not be
// searched is cleared and recorded as expired.
func TestReconcile_FailuresRetryUntilBound(t *testing.T) {
	e := newReconcileEnv(t)
	ctx := context.Background()
	crash := func() {
		broker.SetCrashAfterMint(e.srv, func(approval.Grant) bool { return true })
		_, _ = e.srv.IssueCredential(broker.AsWorkload(ctx, orderAPI), &brokerv1.IssueCredentialRequest{Entitlement: "m-auto"})
		broker.SetCrashAfterMint(e.srv, nil)
	}
	crash()
	unavailable := errors.New("vault unavailable")
	e.vault.revokeErr.Store(&unavailable)
	if rep, _ := e.srv.ReconcileIntents(ctx); rep.Pending != 1 || rep.Revoked != 0 {
		t.Errorf("revocation failing: report %+v, want the intent pending", rep)
	}
	e.vault.revokeErr.Store(nil)
	if rep, err := e.srv.ReconcileIntents(ctx); err != nil || rep.Revoked != 1 {
		t.Errorf("revocation working again: report %+v, %v; want 1 revoked", rep, err)
	}
	if len(e.vault.liveRefs()) != 0 {
		t.Errorf("live after reconciling: %v", e.vault.liveRefs())
	}

	crash()
	e.vault.searchErr.Store(&unavailable)
	if rep, _ := e.srv.ReconcileIntents(ctx); rep.Pending != 1 {
		t.Errorf("search failing: report %+v, want the intent pending", rep)
	}
	e.clock.Advance(10*time.Minute + time.Minute) // the grant's TTL and the leeway
	if rep, _ := e.srv.ReconcileIntents(ctx); rep.Cleared != 1 {
		t.Errorf("past the bound: report %+v, want it cleared", rep)
	}
	if got := e.orphanRecords(t); len(got) != 2 || got[0] != "revoked" || got[1] != "expired" {
		t.Errorf("orphan records = %v, want [revoked expired]", got)
	}
}

// T1, T10: a credential that outlives its grant is refused and revoked at
// once; when that revocation fails, its record must not name it, so that
// the intent stays and the reconciler revokes the orphan later.
func TestReconcile_UnrevokedOverGrantCredentialIsAnOrphan(t *testing.T) {
	e := newReconcileEnv(t)
	ctx := context.Background()
	e.vault.overGrant.Store(true)
	unavailable := errors.New("vault unavailable")
	e.vault.revokeErr.Store(&unavailable)
	if _, err := e.srv.IssueCredential(broker.AsWorkload(ctx, orderAPI), &brokerv1.IssueCredentialRequest{Entitlement: "m-auto"}); err == nil {
		t.Fatal("IssueCredential with a credential outliving the grant succeeded")
	}
	if live := e.vault.liveRefs(); len(live) != 1 {
		t.Fatalf("live after the failed revocation = %v, want the one minted", live)
	}
	e.vault.revokeErr.Store(nil)
	rep, err := e.srv.ReconcileIntents(ctx)
	if err != nil || rep.Revoked != 1 {
		t.Errorf("report %+v, %v; want the orphan revoked", rep, err)
	}
	if live := e.vault.liveRefs(); len(live) != 0 {
		t.Errorf("live after reconciling = %v, want none", live)
	}
}
