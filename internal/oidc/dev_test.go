package oidc_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/internal/oidc"
)

// serveDev starts a DevIssuer on a loopback httptest server and returns it
// with its issuer URL and a Verifier configured against it by discovery.
func serveDev(t *testing.T) (*oidc.DevIssuer, *httptest.Server, *oidc.Verifier) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	dev, err := oidc.NewDevIssuer(issuer, now)
	if err != nil {
		t.Fatalf("NewDevIssuer() err = %v", err)
	}
	srv.Config.Handler = dev.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	v := newVerifier(t, oidc.Config{
		Issuer:     issuer,
		Audience:   oidc.DevAudience,
		HTTPClient: srv.Client(),
		Now:        now,
	})
	return dev, srv, v
}

func TestDevIssuer_Mint_VerifierAccepts(t *testing.T) {
	t.Parallel()
	dev, srv, v := serveDev(t)
	tok, err := dev.Mint("alice", []string{"dba"}, 2*time.Hour)
	if err != nil {
		t.Fatalf("Mint() err = %v", err)
	}
	got, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("Verify(dev token) err = %v", err)
	}
	want := oidc.Person{Issuer: srv.URL, Subject: "alice", Groups: []string{"dba"}, Expires: epoch.Add(2 * time.Hour)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Verify(dev token) mismatch (-want +got):\n%s", diff)
	}
	if p := got.Principal(); p.String() != "oidc:"+srv.URL+"#alice" {
		t.Errorf("Principal() = %q, want oidc:%s#alice", p, srv.URL)
	}
}

func TestDevIssuer_Mint_OtherDevKeyRejected(t *testing.T) {
	t.Parallel()
	_, srv, v := serveDev(t)
	// Same issuer URL, different (fresh) key: an impostor dev issuer.
	impostor, err := oidc.NewDevIssuer(srv.URL, now)
	if err != nil {
		t.Fatalf("NewDevIssuer() err = %v", err)
	}
	tok, err := impostor.Mint("alice", []string{"dba"}, time.Hour)
	if err != nil {
		t.Fatalf("Mint() err = %v", err)
	}
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, oidc.ErrUnauthenticated) {
		t.Fatalf("Verify(impostor token) err = %v, want ErrUnauthenticated", err)
	}
}

func TestDevIssuer_Mint_InvalidRequest(t *testing.T) {
	t.Parallel()
	dev, err := oidc.NewDevIssuer("http://127.0.0.1:1", now)
	if err != nil {
		t.Fatalf("NewDevIssuer() err = %v", err)
	}
	tests := []struct {
		name    string
		subject string
		groups  []string
		ttl     time.Duration
	}{
		{"uppercase subject", "Alice", nil, time.Hour},
		{"empty subject", "", nil, time.Hour},
		{"subject longer than 64", strings.Repeat("a", 65), nil, time.Hour},
		{"subject starting with a dot", ".alice", nil, time.Hour},
		{"group with a slash", "alice", []string{"dba", "../admin"}, time.Hour},
		{"empty group", "alice", []string{""}, time.Hour},
		{"too many groups", "alice", strings.Split(strings.Repeat("g,", 32)+"g", ","), time.Hour},
		{"zero ttl", "alice", nil, 0},
		{"ttl above 8h", "alice", nil, 8*time.Hour + time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := dev.Mint(tc.subject, tc.groups, tc.ttl); !errors.Is(err, oidc.ErrInvalidRequest) {
				t.Fatalf("Mint(%q, %q, %s) err = %v, want ErrInvalidRequest", tc.subject, tc.groups, tc.ttl, err)
			}
		})
	}
}

func TestNewDevIssuer_InvalidURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://127.0.0.1", "http://127.0.0.1/?q=1", "http://127.0.0.1/#f"} {
		if _, err := oidc.NewDevIssuer(u, now); !errors.Is(err, oidc.ErrInvalidConfig) {
			t.Errorf("NewDevIssuer(%q) err = %v, want ErrInvalidConfig", u, err)
		}
	}
}

func TestDevIssuer_TokenHandler(t *testing.T) {
	t.Parallel()
	_, srv, v := serveDev(t)
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		wantStatus  int
		wantPerson  *oidc.Person
	}{
		{
			name: "subject and groups get a token for the default ttl", method: http.MethodPost,
			contentType: "application/json", body: `{"subject":"alice","groups":["dba"]}`, wantStatus: http.StatusOK,
			wantPerson: &oidc.Person{Issuer: srv.URL, Subject: "alice", Groups: []string{"dba"}, Expires: epoch.Add(oidc.DevDefaultTTL)},
		},
		{
			name: "ttl of 8h is allowed", method: http.MethodPost,
			contentType: "application/json; charset=utf-8", body: `{"subject":"bob","ttl":"8h"}`, wantStatus: http.StatusOK,
			wantPerson: &oidc.Person{Issuer: srv.URL, Subject: "bob", Expires: epoch.Add(8 * time.Hour)},
		},
		{name: "ttl above 8h is refused", method: http.MethodPost, contentType: "application/json", body: `{"subject":"bob","ttl":"9h"}`, wantStatus: http.StatusBadRequest},
		{name: "malformed ttl is refused", method: http.MethodPost, contentType: "application/json", body: `{"subject":"bob","ttl":"soon"}`, wantStatus: http.StatusBadRequest},
		{name: "invalid subject is refused", method: http.MethodPost, contentType: "application/json", body: `{"subject":"Bob"}`, wantStatus: http.StatusBadRequest},
		{name: "invalid group is refused", method: http.MethodPost, contentType: "application/json", body: `{"subject":"bob","groups":["a b"]}`, wantStatus: http.StatusBadRequest},
		{name: "unknown field is refused", method: http.MethodPost, contentType: "application/json", body: `{"subject":"bob","admin":true}`, wantStatus: http.StatusBadRequest},
		{name: "oversized body is refused", method: http.MethodPost, contentType: "application/json", body: `{"subject":"` + strings.Repeat("a", 8<<10) + `"}`, wantStatus: http.StatusBadRequest},
		{name: "form post is refused", method: http.MethodPost, contentType: "text/plain", body: `{"subject":"bob"}`, wantStatus: http.StatusUnsupportedMediaType},
		{name: "GET is refused", method: http.MethodGet, wantStatus: http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+oidc.DevTokenPath, bytes.NewBufferString(tc.body))
			if err != nil {
				t.Fatalf("NewRequest() err = %v", err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("POST token err = %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("POST token status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantPerson == nil {
				return
			}
			var body struct {
				IDToken   string    `json:"id_token"`
				ExpiresAt time.Time `json:"expires_at"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("decode token response: %v", err)
			}
			if !body.ExpiresAt.Equal(tc.wantPerson.Expires) {
				t.Errorf("expires_at = %s, want %s", body.ExpiresAt, tc.wantPerson.Expires)
			}
			got, err := v.Verify(t.Context(), body.IDToken)
			if err != nil {
				t.Fatalf("Verify(id_token) err = %v", err)
			}
			if diff := cmp.Diff(*tc.wantPerson, got); diff != "" {
				t.Errorf("Verify(id_token) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
