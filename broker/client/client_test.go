package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/broker/client"
	"github.com/writ-dev/writ/internal/testenv"
)

const lifetime = 10 * time.Minute // the test policy's max_ttl for "orders"

func TestNew_Config(t *testing.T) {
	t.Setenv(client.SocketEnv, "") // no parallel: the env var is process-wide
	src := memSource{}
	tests := []struct {
		name string
		cfg  client.Config
	}{
		{name: "broker address missing", cfg: client.Config{BrokerID: brokerID, Source: src}},
		{name: "broker ID missing", cfg: client.Config{BrokerAddr: "127.0.0.1:1", Source: src}},
		{name: "socket and source both set", cfg: client.Config{BrokerAddr: "127.0.0.1:1", BrokerID: brokerID, Source: src, Socket: "unix:///tmp/x.sock"}},
		{name: "no SVID source and no env var", cfg: client.Config{BrokerAddr: "127.0.0.1:1", BrokerID: brokerID}},
		{name: "renew fraction above one", cfg: client.Config{BrokerAddr: "127.0.0.1:1", BrokerID: brokerID, Source: src, RenewFraction: 1.5}},
		{name: "jitter of a whole lifetime", cfg: client.Config{BrokerAddr: "127.0.0.1:1", BrokerID: brokerID, Source: src, Jitter: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(context.Background(), tt.cfg)
			if !errors.Is(err, client.ErrInvalidConfig) {
				if c != nil {
					_ = c.Close()
				}
				t.Fatalf("New() err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestClient_Credential_Cached(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	c := b.client(app, client.Config{})
	first, err := c.Credential(context.Background(), "orders")
	if err != nil {
		t.Fatalf("Credential() err = %v", err)
	}
	b.clock.Advance(time.Minute)
	second, err := c.Credential(context.Background(), "orders")
	if err != nil {
		t.Fatalf("second Credential() err = %v", err)
	}
	if second.GrantID != first.GrantID || second.Secret.Reveal() != first.Secret.Reveal() {
		t.Errorf("second Credential() = %v, want the cached %v", second, first)
	}
	if n := b.issues.Load(); n != 1 {
		t.Errorf("broker got %d IssueCredential calls, want 1", n)
	}
	if first.Kind != "jwt" || first.Entitlement != "orders" || first.Lifetime() != lifetime || !first.IssuedAt.Equal(start) || first.Reference == "" ||
		!strings.HasPrefix(first.Data["username"].Reveal(), "user-") {
		t.Errorf("Credential() = %+v, want a 10m jwt for orders issued at %v", first, start)
	}
}

// The renewal point is RenewFraction ± Jitter of the lifetime: before the
// earliest possible point no call reaches the broker, after the latest one
// the credential is renewed.
func TestClient_Credential_RenewsWithinJitterBounds(t *testing.T) {
	t.Parallel()
	const fraction, jitter = 0.5, 0.1
	for i := range 5 { // several draws of the jitter
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			b := startBroker(t)
			c := b.client(app, client.Config{RenewFraction: fraction, Jitter: jitter})
			first, err := c.Credential(context.Background(), "orders")
			if err != nil {
				t.Fatal(err)
			}
			b.clock.Advance(time.Duration((fraction - jitter) * float64(lifetime))) // earliest renewal point
			b.clock.Advance(-time.Second)
			if got, err := c.Credential(context.Background(), "orders"); err != nil || got.GrantID != first.GrantID {
				t.Fatalf("Credential() before the earliest renewal = %v, %v; want the cached credential", got, err)
			}
			b.clock.Advance(time.Duration(2*jitter*float64(lifetime)) + 2*time.Second) // past the latest
			got, err := c.Credential(context.Background(), "orders")
			if err != nil {
				t.Fatal(err)
			}
			if got.GrantID == first.GrantID || !got.IssuedAt.Equal(b.clock.Now()) {
				t.Errorf("Credential() past the latest renewal = %v, want a new credential issued now", got)
			}
			if n := b.issues.Load(); n != 2 {
				t.Errorf("broker got %d IssueCredential calls, want 2", n)
			}
		})
	}
}

func TestClient_Credential_ConcurrentCallersShareOneRequest(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	var nowCalls atomic.Int64
	c := b.client(app, client.Config{Now: func() time.Time { nowCalls.Add(1); return b.clock.Now() }})
	entered, release := b.issuer.hold()
	defer release()

	const n = 20
	var wg sync.WaitGroup
	got := make([]client.Credential, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.Credential(context.Background(), "orders")
		}()
	}
	<-entered // the one request reached the issuer
	// Each caller reads the clock once, under the lock, before joining the
	// request in flight; the request cannot finish before release.
	testenv.Eventually(t, 10*time.Second, "every caller to read the clock", func() bool { return nowCalls.Load() >= n })
	release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i].GrantID != got[0].GrantID {
			t.Fatalf("caller %d: Credential() = %v, %v; want %v", i, got[i], errs[i], got[0])
		}
	}
	if calls := b.issues.Load(); calls != 1 {
		t.Errorf("broker got %d IssueCredential calls for %d concurrent callers, want 1", calls, n)
	}
}

// A caller that gives up does not cancel the request other callers share.
func TestClient_Credential_CallerCancelDoesNotCancelSharedRequest(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	c := b.client(app, client.Config{})
	entered, release := b.issuer.hold()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Credential(ctx, "orders"); errc <- err }()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Credential() err = %v, want context.Canceled", err)
	}
	release()
	if _, err := c.Credential(context.Background(), "orders"); err != nil {
		t.Fatalf("Credential() after a caller gave up err = %v", err)
	}
	if n := b.issues.Load(); n != 1 {
		t.Errorf("broker got %d IssueCredential calls, want the 1 shared request", n)
	}
}

func TestClient_Credential_RenewalFailureServesCached(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	var logs syncBuffer
	c := b.client(app, client.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	first, err := c.Credential(context.Background(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	b.issuer.setFail(errors.New("vault: connection refused"))
	b.clock.Advance(9 * time.Minute) // past any renewal point, 1m before expiry
	got, err := c.Credential(context.Background(), "orders")
	if err != nil || got.GrantID != first.GrantID {
		t.Fatalf("Credential() with the issuer down = %v, %v; want the cached credential", got, err)
	}
	if !strings.Contains(logs.String(), "credential renewal failed") || !strings.Contains(logs.String(), first.Reference) {
		t.Errorf("logs = %s, want the renewal failure with the credential's reference", logs.String())
	}
	if strings.Contains(logs.String(), first.Secret.Reveal()) {
		t.Errorf("logs contain the secret: %s", logs.String())
	}

	// Right after a failure, callers are served from the cache without a
	// request; a little later the renewal is tried again.
	calls := b.issues.Load()
	if _, err := c.Credential(context.Background(), "orders"); err != nil || b.issues.Load() != calls {
		t.Errorf("Credential() right after a failure: err %v, %d new requests; want the cache, none", err, b.issues.Load()-calls)
	}
	b.issuer.setFail(nil)
	b.clock.Advance(5 * time.Second)
	got, err = c.Credential(context.Background(), "orders")
	if err != nil || got.GrantID == first.GrantID {
		t.Errorf("Credential() once the issuer is back = %v, %v; want a new credential", got, err)
	}
}

func TestClient_Credential_ExpiredAndBrokerDown(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	c := b.client(app, client.Config{Timeout: 5 * time.Second})
	if _, err := c.Credential(context.Background(), "orders"); err != nil {
		t.Fatal(err)
	}
	b.stop()
	b.clock.Advance(lifetime)
	got, err := c.Credential(context.Background(), "orders")
	if !errors.Is(err, client.ErrUnavailable) || status.Code(err) != codes.Unavailable {
		t.Fatalf("Credential() after expiry with the broker down = %v, %v; want ErrUnavailable", got, err)
	}
}

func TestClient_Credential_Errors(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	tests := []struct {
		name        string
		caller      spiffeid.ID
		entitlement string
		want        error
		wantCode    codes.Code
	}{
		{name: "not a requester", caller: stranger, entitlement: "orders", want: client.ErrDenied, wantCode: codes.PermissionDenied},
		{name: "no such entitlement", caller: app, entitlement: "nope", want: client.ErrNotFound, wantCode: codes.NotFound},
		{name: "malformed entitlement name", caller: app, entitlement: "../etc", want: client.ErrInvalid, wantCode: codes.InvalidArgument},
		{name: "needs approval", caller: app, entitlement: "db-admin", want: client.ErrNeedsApproval, wantCode: codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := b.client(tt.caller, client.Config{})
			_, err := c.Credential(context.Background(), tt.entitlement)
			if !errors.Is(err, tt.want) || status.Code(err) != tt.wantCode {
				t.Errorf("Credential(%q) err = %v (code %v), want %v and %v", tt.entitlement, err, status.Code(err), tt.want, tt.wantCode)
			}
			if strings.Contains(err.Error(), "rpc error") {
				t.Errorf("Credential(%q) err = %q, want the broker's message without gRPC's prefix", tt.entitlement, err)
			}
		})
	}
}

func TestClient_Close(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	c := b.client(app, client.Config{})
	if err := c.Close(); err != nil {
		t.Fatalf("Close() err = %v", err)
	}
	if _, err := c.Credential(context.Background(), "orders"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Credential() after Close err = %v, want ErrClosed", err)
	}
	if _, err := c.RequestAccess(context.Background(), "db-admin", time.Hour, "r", ""); !errors.Is(err, client.ErrClosed) {
		t.Errorf("RequestAccess() after Close err = %v, want ErrClosed", err)
	}
}

func TestCredential_SecretIsRedacted(t *testing.T) {
	t.Parallel()
	const secret = "eyJhbGciOiJFZERTQSJ9.secret"
	c := client.Credential{GrantID: "g_1", Entitlement: "orders", Kind: "vault_secret", Secret: secret, Reference: "lease-1", ExpiresAt: start,
		Data: map[string]client.Secret{"password": secret}}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("got", "credential", c, "secret", c.Secret)
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c),
		"%s and %q secret": fmt.Sprintf("%s %q", c.Secret, c.Secret), "slog": logs.String(),
	} {
		if strings.Contains(s, secret) {
			t.Errorf("%s prints the secret: %s", name, s)
		}
	}
	if !strings.Contains(logs.String(), "lease-1") {
		t.Errorf("slog output %s lacks the reference", logs.String())
	}
	if c.Secret.Reveal() != secret {
		t.Errorf("Reveal() = %q, want %q", c.Secret.Reveal(), secret)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
