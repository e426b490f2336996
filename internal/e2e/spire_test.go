package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
)

// TestSPIRE_UIDAttestation: a workload process under the registered uid
// gets a credential through the Go client library knowing only
// SPIFFE_ENDPOINT_SOCKET (and through the writ CLI); a process under
// another uid gets neither an SVID nor a credential.
func TestSPIRE_UIDAttestation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	id, _ := e.registerWorkload(t, "/ns/orders/api", uidOrders)

	t.Run("registered uid gets a credential through the client library", func(t *testing.T) {
		w := e.startWorkload(t, uidOrders, e.broker.grpcAddr, 0)
		w.waitForSVID(t, id)
		w.mustDo(t, "new")
		first := w.mustDo(t, "credential")
		if first.GrantID == "" || time.Until(first.Expires) <= 0 {
			t.Errorf("Credential() = grant %q expiring %s, want a live credential", first.GrantID, first.Expires)
		}
		if again := w.mustDo(t, "credential"); again.GrantID != first.GrantID {
			t.Errorf("second Credential() = grant %q, want the cached %q", again.GrantID, first.GrantID)
		}
		if fresh := w.mustDo(t, "issue"); fresh.GrantID == first.GrantID {
			t.Errorf("Issue() returned the cached grant %q, want a new one", fresh.GrantID)
		}
	})
	t.Run("registered uid gets a credential through the writ CLI", func(t *testing.T) {
		out, code := e.runWrit(t, uidOrders, "credential", "--entitlement", entitlement, "--broker", e.broker.grpcAddr,
			"--broker-id", e.brokerID.String(), "--output", "json", "--timeout", "30s")
		var cred struct {
			Secret string `json:"secret"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &cred) != nil || cred.Secret == "" {
			t.Errorf("writ credential as uid %d: exit %d, want 0 and a credential:\n%s", uidOrders, code, out)
		}
	})
	t.Run("another uid gets no SVID and no credential", func(t *testing.T) {
		// The agent answers an unregistered uid at once; the registered
		// workload above shows it is in sync, so a few seconds are conclusive.
		w := e.startWorkload(t, uidNobody, e.broker.grpcAddr, 5*time.Second)
		if r := w.do(t, "svid"); r.OK {
			t.Errorf("Workload API served %s to uid %d, which is not registered", r.ID, uidNobody)
		}
		if r := w.do(t, "new"); r.OK {
			t.Fatalf("client.New() as uid %d succeeded, want no SVID", uidNobody)
		}
		out, code := e.runWrit(t, uidNobody, "credential", "--entitlement", entitlement, "--broker", e.broker.grpcAddr,
			"--broker-id", e.brokerID.String(), "--output", "json", "--timeout", "5s")
		if code == 0 || strings.Contains(out, `"secret"`) {
			t.Errorf("writ credential as uid %d: exit %d, want a failure and no credential:\n%s", uidNobody, code, out)
		}
	})
}

// TestSPIRE_RotationKeepsAccess: with 2-minute X.509-SVIDs, a workload keeps
// getting credentials every 10 seconds for 5 minutes, across several
// rotations of both its own SVID and the broker's, with no restart. Each
// connection lives at most as long as the client SVID it was made with, so
// calls after the first SVIDs expired prove the new ones were used.
func TestSPIRE_RotationKeepsAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 5 minutes")
	}
	t.Parallel()
	const (
		ttl  = 2 * time.Minute
		run  = 5 * time.Minute
		pace = 10 * time.Second
	)
	e := newEnv(t, ttl)
	id, _ := e.registerWorkload(t, "/ns/orders/api", uidOrders)
	w := e.startWorkload(t, uidOrders, e.broker.grpcAddr, 0)
	w.waitForSVID(t, id)
	w.mustDo(t, "new")

	grants := map[string]bool{}
	clientSerials, brokerSerials := map[string]bool{}, map[string]bool{}
	retries := 0
	start := time.Now()
	tick := time.NewTicker(pace)
	defer tick.Stop()
	for calls := 0; time.Since(start) < run; calls++ {
		r := w.do(t, "issue")
		if !r.OK && r.Code == codes.Unavailable.String() {
			// A call can race the connection being closed as its client SVID
			// expires; the retry reconnects with the rotated SVID.
			retries++
			r = w.do(t, "issue")
		}
		if !r.OK {
			t.Fatalf("call %d at %s: Issue() failed: %s (%s)", calls, time.Since(start).Round(time.Second), r.Error, r.Code)
		}
		if grants[r.GrantID] {
			t.Fatalf("call %d: grant %s issued twice", calls, r.GrantID)
		}
		grants[r.GrantID] = true
		clientSerials[w.mustDo(t, "svid").Serial] = true
		brokerSerials[e.brokerSerial(t).String()] = true
		<-tick.C
	}
	t.Logf("%d credentials in %s; %d client SVIDs and %d broker SVIDs seen; %d retries after a connection closed at SVID expiry",
		len(grants), time.Since(start).Round(time.Second), len(clientSerials), len(brokerSerials), retries)
	if len(grants) < int(run/pace)-2 {
		t.Errorf("%d credentials in %s, want about one every %s", len(grants), run, pace)
	}
	// Rotation at half of a 2-minute TTL: about 5 SVIDs each in 5 minutes.
	if len(clientSerials) < 3 || len(brokerSerials) < 3 {
		t.Errorf("saw %d client and %d broker SVIDs, want at least 3 of each: did SPIRE rotate?", len(clientSerials), len(brokerSerials))
	}
	if retries > 3 {
		t.Errorf("%d calls needed a retry, want at most one per client SVID expiry", retries)
	}
}

// TestSPIRE_DeletedEntryLosesAccess: once a workload's registration entry
// is deleted, its client keeps its last SVID but loses access when that
// SVID expires (2-minute TTL: within 3 minutes), even on a busy connection.
func TestSPIRE_DeletedEntryLosesAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for up to 3 minutes")
	}
	t.Parallel()
	const (
		ttl   = 2 * time.Minute
		limit = 3 * time.Minute
		poll  = 5 * time.Second
	)
	e := newEnv(t, ttl)
	id, entry := e.registerWorkload(t, "/ns/orders/api", uidOrders)
	w := e.startWorkload(t, uidOrders, e.broker.grpcAddr, 0)
	w.waitForSVID(t, id)
	w.mustDo(t, "new")
	w.mustDo(t, "issue")
	last := w.mustDo(t, "svid")

	// SPIRE stops renewing the deleted entry and its last SVID expires on
	// SPIRE's wall clock (a real process: no clock to inject). Poll the
	// outcome; each poll starts a workload process, hence the interval.
	e.spire.DeleteEntry(t, entry)
	deleted := time.Now()
	var lost result
	for {
		lost = w.do(t, "issue")
		if !lost.OK {
			break
		}
		if time.Since(deleted) > limit {
			t.Fatalf("workload still gets credentials %s after its entry was deleted (its last SVID expires %s)", limit, last.NotAfter)
		}
		time.Sleep(poll)
	}
	t.Logf("access lost %s after the entry was deleted: %s (%s)", time.Since(deleted).Round(time.Second), lost.Error, lost.Code)
	if lost.Code != codes.Unavailable.String() {
		t.Errorf("Issue() after expiry failed with %s, want Unavailable (the broker refuses the handshake)", lost.Code)
	}
	if r := w.do(t, "issue"); r.OK {
		t.Error("Issue() succeeded again after access was lost")
	}
	if r := w.do(t, "svid"); r.OK {
		t.Errorf("Workload API still serves %s after its entry was deleted", r.ID)
	}
	out, code := e.runWrit(t, uidOrders, "credential", "--entitlement", entitlement, "--broker", e.broker.grpcAddr,
		"--broker-id", e.brokerID.String(), "--timeout", "10s")
	if code == 0 {
		t.Errorf("writ credential after the entry was deleted: exit 0, want a failure:\n%s", out)
	}
}

// TestSPIRE_JWTSVID: a workload behind a TLS-terminating proxy fetches a
// JWT-SVID for the broker's audience from the agent, and the proxy presents
// it to the broker's JWT-SVID listener.
func TestSPIRE_JWTSVID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	id, _ := e.registerWorkload(t, "/ns/orders/api", uidOrders)
	w := e.startWorkload(t, uidOrders, e.broker.grpcAddr, 0)
	w.waitForSVID(t, id)
	good := w.mustDo(t, "jwt "+e.brokerID.String())
	if good.ID != id.String() {
		t.Fatalf("JWT-SVID for %s, want %s", good.ID, id)
	}
	wrongAudience := w.mustDo(t, "jwt spiffe://example.org/someone-else").Token

	td := e.spire.TrustDomain()
	now := time.Now()
	local := spiffetest.NewJWTAuthority(t, td) // not in SPIRE's bundle
	foreignTD := spiffeid.RequireTrustDomainFromString("foreign.example")
	foreign := spiffetest.NewJWTAuthority(t, foreignTD)
	claims := spiffetest.JWTClaims{Subject: id.String(), Audience: []string{e.brokerID.String()}, Expiry: now.Add(5 * time.Minute), IssuedAt: now}
	expired := claims
	expired.Expiry, expired.IssuedAt = now.Add(-5*time.Minute), now.Add(-10*time.Minute)
	foreignClaims := claims
	foreignClaims.Subject = "spiffe://foreign.example/ns/orders/api"

	type check struct {
		name     string
		token    string
		wantCode codes.Code
	}
	run := func(t *testing.T, addr string, checks []check) {
		t.Helper()
		for _, c := range checks {
			cred, err := e.callJWTSVID(t, addr, c.token)
			if got := status.Code(err); got != c.wantCode {
				t.Errorf("%s: IssueCredential() code = %v (%v), want %v", c.name, got, err, c.wantCode)
				continue
			}
			if c.wantCode == codes.OK && cred.GetSecret() == "" {
				t.Errorf("%s: IssueCredential() returned no credential", c.name)
			}
		}
	}

	t.Run("keys from the Workload API", func(t *testing.T) {
		run(t, e.broker.jwtSVIDAddr, []check{
			{name: "SPIRE JWT-SVID for the broker's audience", token: good.Token, wantCode: codes.OK},
			{name: "SPIRE JWT-SVID for another audience", token: wrongAudience, wantCode: codes.Unauthenticated},
			{name: "no token", token: "", wantCode: codes.Unauthenticated},
			{name: "signed by a key not in the bundle", token: local.Mint(t, claims), wantCode: codes.Unauthenticated},
			{name: "expired, signed by a key not in the bundle", token: local.Mint(t, expired), wantCode: codes.Unauthenticated},
			{name: "foreign trust domain", token: foreign.Mint(t, foreignClaims), wantCode: codes.Unauthenticated},
		})
		// The mutual TLS listener does not take bearer tokens: without a
		// client certificate the handshake fails.
		if _, err := e.callJWTSVID(t, e.broker.grpcAddr, good.Token); status.Code(err) != codes.Unavailable {
			t.Errorf("JWT-SVID on the mTLS listener: %v, want the handshake refused (Unavailable)", err)
		}
	})

	t.Run("keys from svid.jwt_bundle_file with PEM files", func(t *testing.T) {
		// The broker's SVID as PEM files, and SPIRE's bundle as `spire-server
		// bundle show -format spiffe` prints it, plus one local key so that
		// expiry is checked with a trusted signature.
		svid, err := e.bundles.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := svid.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		bundle, err := e.bundles.GetX509BundleForTrustDomain(td)
		if err != nil {
			t.Fatal(err)
		}
		bundlePEM, err := bundle.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(e.spire.BundleJSON(t), &doc); err != nil {
			t.Fatal(err)
		}
		doc["keys"] = append(doc["keys"].([]any), json.RawMessage(local.JWK(t)))
		jwtBundle, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		paths := map[string][]byte{"svid.pem": certPEM, "svid_key.pem": keyPEM, "bundle.pem": bundlePEM, "jwt-bundle.json": jwtBundle}
		for name, data := range paths {
			writeFile(t, filepath.Join(dir, name), string(data))
		}
		b := e.startWritd(t, "files", fmt.Sprintf("svid: {cert_file: %q, key_file: %q, bundle_file: %q, jwt_bundle_file: %q}\n",
			filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid_key.pem"), filepath.Join(dir, "bundle.pem"), filepath.Join(dir, "jwt-bundle.json")))
		run(t, b.jwtSVIDAddr, []check{
			{name: "SPIRE JWT-SVID", token: good.Token, wantCode: codes.OK},
			{name: "token signed by the added key", token: local.Mint(t, claims), wantCode: codes.OK},
			{name: "expired token signed by the added key", token: local.Mint(t, expired), wantCode: codes.Unauthenticated},
			{name: "SPIRE JWT-SVID for another audience", token: wrongAudience, wantCode: codes.Unauthenticated},
			{name: "foreign trust domain", token: foreign.Mint(t, foreignClaims), wantCode: codes.Unauthenticated},
		})
	})
}
