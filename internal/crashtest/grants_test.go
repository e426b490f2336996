package crashtest

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/pgtest"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/vault"
	"github.com/writ-dev/writ/internal/vault/vaulttest"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

const jwtEntitlements = `version: 1
trust_domain: crash.test
entitlements:
  - name: jwt-auto
    owner: crash
    purpose: crash harness
    max_ttl: 15m
    requesters: [spiffe://crash.test/load]
    issuer: {jwt: {audience: [crash]}}
    approval: {mode: auto}
`

const vaultEntitlements = `  - name: vault-token
    owner: crash
    purpose: crash harness
    max_ttl: 15m
    requesters: [spiffe://crash.test/load]
    issuer: {vault_token: {role: orders}}
    approval: {mode: auto}
  - name: vault-db
    owner: crash
    purpose: crash harness
    max_ttl: 15m
    requesters: [spiffe://crash.test/load]
    issuer: {vault_secret: {path: database/creds/orders-ro}}
    approval: {mode: auto}
`

const leasePath = "database/creds/orders-ro"

// T1, T2: kill -9 under concurrent grants with the local JWT issuer.
func TestCrash_Grants_LocalJWT(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the broker")
	}
	t.Parallel()
	runGrantCrash(t, jwtEntitlements, []string{"jwt-auto"}, nil)
}

// T1, T2: kill -9 under concurrent grants of real Vault tokens and
// database leases (and local JWTs).
func TestCrash_Grants_Vault(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the broker")
	}
	t.Parallel()
	v := vaulttest.Start(t)
	pg := pgtest.Start(t)
	v.TokenRole(t, "orders", time.Hour)
	v.DatabaseRoles(t, pg.Addr, pg.SuperUser, pg.Password, map[string][2]time.Duration{"orders-ro": {5 * time.Minute, 10 * time.Minute}})
	hcl, err := vault.RecipePolicy(approval.Recipe{Kind: approval.KindVaultToken, Role: "orders"}, approval.Recipe{Kind: approval.KindVaultSecret, Path: leasePath})
	if err != nil {
		t.Fatal(err)
	}
	v.Policy(t, "writ-broker", hcl+"\n"+vault.ReconcilerPolicy(leasePath))
	tokenFile := filepath.Join(t.TempDir(), "vault-token")
	write(t, tokenFile, v.Token(t, "writ-broker"))
	runGrantCrash(t, jwtEntitlements+vaultEntitlements, []string{"jwt-auto", "vault-token", "vault-db"}, &vaultCheck{v: v, conf: vaultConf{addr: v.Addr, tokenFile: tokenFile}})
}

type vaultCheck struct {
	v    *vaulttest.Server
	conf vaultConf
}

// got is a credential a client received.
type got struct {
	entitlement, grantID, ref string
	kind                      brokerv1.CredentialKind
}

func runGrantCrash(t *testing.T, policy string, entitlements []string, vc *vaultCheck) {
	var conf *vaultConf
	if vc != nil {
		conf = &vc.conf
	}
	h := newHarness(t, policy, conf)
	n := cycles(t)
	var (
		mu       sync.Mutex
		received []got
		failures atomic.Int64
	)
	const workers = 8
	for c := range n {
		d := h.start(t)
		clients := make([]brokerv1.BrokerServiceClient, workers)
		for i := range clients {
			cl, closeFn := h.workload(t, d)
			defer closeFn()
			clients[i] = cl
		}
		ctx, cancel := context.WithCancel(context.Background())
		var killed atomic.Bool
		var wg sync.WaitGroup
		for _, cl := range clients {
			wg.Go(func() {
				for ctx.Err() == nil {
					ent := entitlements[rand.IntN(len(entitlements))]
					rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
					resp, err := cl.IssueCredential(rctx, &brokerv1.IssueCredentialRequest{Entitlement: ent, Ttl: durationpb.New(10 * time.Minute)})
					rcancel()
					if err != nil {
						if !killed.Load() {
							failures.Add(1) // refusals while the broker ran
						}
						continue
					}
					c := resp.GetCredential()
					mu.Lock()
					received = append(received, got{entitlement: ent, grantID: c.GetGrantId(), ref: c.GetReference(), kind: c.GetKind()})
					mu.Unlock()
				}
			})
		}
		// Kill at a random moment of the load, sometimes almost at once.
		time.Sleep(time.Duration(100+rand.IntN(1400)) * time.Millisecond)
		killed.Store(true)
		d.kill()
		cancel()
		wg.Wait()
		mu.Lock()
		t.Logf("cycle %d: %d credentials received so far", c+1, len(received))
		mu.Unlock()
	}
	// The last start runs the reconciler before serving; then a clean stop.
	d := h.start(t)
	d.stop(t)

	store, err := boltstore.Open(filepath.Join(h.dataDir, "writ.db"), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sum, err := audit.Verify(t.Context(), store)
	if err != nil {
		t.Fatalf("ledger does not verify: %v", err)
	}
	if out, ok := h.auditVerify(t); !ok {
		t.Errorf("writ audit verify failed:\n%s", out)
	}
	entries := scan(t, store)
	granted := map[string]audit.Entry{} // grant ID → grant record
	recordedRefs := map[string]bool{}
	orphans := map[string]int{}
	for _, e := range entries {
		if e.CredentialRef != "" {
			recordedRefs[e.CredentialRef] = true
		}
		switch {
		case e.Action == "grant" && e.Outcome == "granted":
			granted[e.GrantID] = e
		case e.Action == "orphan_revoked":
			orphans[e.Outcome]++
		}
	}
	// Every credential a client received is in the ledger, by grant ID
	// and by its reference (jti, accessor, lease ID).
	byKind := map[brokerv1.CredentialKind]int{}
	receivedIDs := map[string]bool{}
	for _, g := range received {
		byKind[g.kind]++
		receivedIDs[g.grantID] = true
		e, ok := granted[g.grantID]
		switch {
		case !ok:
			t.Errorf("credential %s (%s, %s) was received but the ledger has no grant record", g.grantID, g.entitlement, g.ref)
		case e.CredentialRef != g.ref:
			t.Errorf("grant %s: received reference %q, ledger recorded %q", g.grantID, g.ref, e.CredentialRef)
		}
	}
	notDelivered := 0
	for id := range granted {
		if !receivedIDs[id] {
			notDelivered++ // T2: recorded, then killed before the response
		}
	}
	// Every intent left is still within its bound; past it, the
	// reconciler must have cleared it.
	now := time.Now()
	intents, err := store.Intents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	pending := map[string]approval.Intent{}
	for _, in := range intents {
		pending[in.GrantID] = in
		if now.After(in.NotAfter.Add(2 * time.Minute)) {
			t.Errorf("intent %s is past its bound %s and was not reconciled", in.GrantID, in.NotAfter)
		}
	}
	var live, liveBounded int
	if vc != nil {
		live, liveBounded = checkVault(t, vc.v, recordedRefs, pending)
	}
	t.Logf("crash harness: %d cycles, %d credentials received (%v), %d calls refused while the broker ran, %d ledger records, %d grants recorded, %d recorded but not delivered (T2), orphans %v, %d intents pending within their bound, Vault: %d live writ credentials all recorded, %d live unrecorded but bounded by a pending intent",
		n, len(received), byKind, failures.Load(), sum.Records, len(granted), notDelivered, orphans, len(intents), live, liveBounded)
}

func scan(t *testing.T, store *boltstore.Store) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	if err := store.ScanRecords(t.Context(), func(_ uint64, raw []byte) error {
		e, err := audit.Decode(raw)
		out = append(out, e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkVault fails t for any live Vault token (with Writ's grant_id
// metadata) or lease under leasePath that the ledger does not record,
// unless a pending intent bounds it. It returns the live recorded and the
// live bounded counts.
func checkVault(t *testing.T, v *vaulttest.Server, recorded map[string]bool, pending map[string]approval.Intent) (live, bounded int) {
	t.Helper()
	ctx := t.Context()
	list, err := v.Client.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := list.Data["keys"].([]any)
	for _, k := range keys {
		acc := k.(string)
		s, err := v.Client.Auth().Token().LookupAccessorWithContext(ctx, acc)
		if err != nil {
			continue // gone meanwhile
		}
		meta, _ := s.Data["meta"].(map[string]any)
		gid, _ := meta["grant_id"].(string)
		if gid == "" {
			continue // not Writ's
		}
		switch in, ok := pending[gid]; {
		case recorded[acc]:
			live++
		case ok:
			bounded++
			if exp := expireTime(t, s.Data); exp.After(in.NotAfter.Add(5 * time.Second)) {
				t.Errorf("unrecorded token %s (grant %s) expires %s, after its intent's bound %s", acc, gid, exp, in.NotAfter)
			}
		default:
			t.Errorf("live Vault token %s (grant %s) is neither in the ledger nor under a pending intent: an unrevoked orphan", acc, gid)
		}
	}
	list, err = v.Client.Logical().ListWithContext(ctx, "sys/leases/lookup/"+leasePath+"/")
	if err != nil {
		t.Fatal(err)
	}
	if list != nil {
		keys, _ = list.Data["keys"].([]any)
	} else {
		keys = nil
	}
	var latest time.Time
	for _, in := range pending {
		if in.Recipe.Path == leasePath && in.NotAfter.After(latest) {
			latest = in.NotAfter
		}
	}
	for _, k := range keys {
		lease := leasePath + "/" + k.(string)
		s, err := v.Client.Logical().WriteWithContext(ctx, "sys/leases/lookup", map[string]any{"lease_id": lease})
		if err != nil || s == nil {
			continue
		}
		switch {
		case recorded[lease]:
			live++
		case !latest.IsZero():
			bounded++
			if exp := expireTime(t, s.Data); exp.After(latest.Add(5 * time.Second)) {
				t.Errorf("unrecorded lease %s expires %s, after every pending intent's bound", lease, exp)
			}
		default:
			t.Errorf("live lease %s is neither in the ledger nor under a pending intent: an unrevoked orphan", lease)
		}
	}
	return live, bounded
}

func expireTime(t *testing.T, data map[string]any) time.Time {
	t.Helper()
	s, _ := data["expire_time"].(string)
	exp, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("expire_time %q: %v", s, err)
	}
	return exp
}
