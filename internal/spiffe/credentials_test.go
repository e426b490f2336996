package spiffe_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
)

func TestServerCredentials_Handshake(t *testing.T) {
	t.Parallel()
	ca, foreignCA := newCA(t), newCA(t)
	bundle := ca.Bundle()
	serverSrc := newMemSource(issue(t, ca, serverID, devca.IssueOptions{}), bundle)
	now := time.Now()

	// clientWith returns mTLS client credentials presenting svid and
	// accepting only serverID.
	clientWith := func(svidOpts devca.IssueOptions, issuer *devca.CA) credentials.TransportCredentials {
		return spiffe.ClientCredentials(newMemSource(issue(t, issuer, clientID, svidOpts), bundle), tlsconfig.AuthorizeID(serverID))
	}

	tests := []struct {
		name        string
		serverAuthz tlsconfig.Authorizer // nil means spiffe.ServerCredentials gets nil
		client      credentials.TransportCredentials
		wantOK      bool
		// serverErr, if set, must accept the server's handshake error, so a
		// rejection is known to be for the intended reason.
		serverErr func(error) bool
	}{
		{
			name:        "valid client SVID is accepted",
			serverAuthz: tlsconfig.AuthorizeMemberOf(testTD),
			client:      clientWith(devca.IssueOptions{}, ca),
			wantOK:      true,
		},
		{
			// T25: an expired client SVID fails the handshake.
			name:        "T25 expired client SVID is rejected",
			serverAuthz: tlsconfig.AuthorizeMemberOf(testTD),
			client:      clientWith(devca.IssueOptions{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)}, ca),
			serverErr:   isInvalidCert(x509.Expired),
		},
		{
			// T25: a client SVID whose validity has not started fails the handshake.
			name:        "T25 not yet valid client SVID is rejected",
			serverAuthz: tlsconfig.AuthorizeMemberOf(testTD),
			client:      clientWith(devca.IssueOptions{NotBefore: now.Add(time.Hour), TTL: time.Hour}, ca),
			serverErr:   isInvalidCert(x509.Expired), // crypto/x509 uses Expired for both ends
		},
		{
			// T25: a client SVID for the right ID signed by a CA outside the
			// bundle (the wrong key) fails the handshake.
			name:        "T25 client SVID signed by a different CA is rejected",
			serverAuthz: tlsconfig.AuthorizeMemberOf(testTD),
			client:      clientWith(devca.IssueOptions{}, foreignCA),
			serverErr:   isUnknownAuthority,
		},
		{
			// T30: a plaintext client never gets past the TLS listener.
			name:        "T30 plaintext client is rejected",
			serverAuthz: tlsconfig.AuthorizeMemberOf(testTD),
			client:      insecure.NewCredentials(),
		},
		{
			// T30: a TLS client that verifies the server but presents no
			// certificate is rejected.
			name:        "T30 TLS client without a certificate is rejected",
			serverAuthz: tlsconfig.AuthorizeMemberOf(testTD),
			client:      credentials.NewTLS(tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(serverID))),
		},
		{
			name:        "client ID the server does not authorize is rejected",
			serverAuthz: tlsconfig.AuthorizeID(otherID),
			client:      clientWith(devca.IssueOptions{}, ca),
		},
		{
			name:        "nil server authorizer rejects every client",
			serverAuthz: nil,
			client:      clientWith(devca.IssueOptions{}, ca),
		},
		{
			name:        "client refuses a server whose ID is not the authorized one",
			serverAuthz: tlsconfig.AuthorizeMemberOf(testTD),
			client: spiffe.ClientCredentials(newMemSource(issue(t, ca, clientID, devca.IssueOptions{}), bundle),
				tlsconfig.AuthorizeID(otherID)),
		},
		{
			name:        "client with nil server authorizer refuses every server",
			serverAuthz: tlsconfig.AuthorizeMemberOf(testTD),
			client:      spiffe.ClientCredentials(newMemSource(issue(t, ca, clientID, devca.IssueOptions{}), bundle), nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			creds := &handshakeRecorder{TransportCredentials: spiffe.ServerCredentials(serverSrc, tt.serverAuthz), errs: make(chan error, 8)}
			ts := startServer(t, creds)
			err := check(t, ts.addr, tt.client)

			if !tt.wantOK {
				if err == nil {
					t.Fatalf("Check() err = nil, want handshake failure")
				}
				if got := status.Code(err); got != codes.Unavailable {
					t.Errorf("Check() code = %v, want %v (err %v)", got, codes.Unavailable, err)
				}
				if n := ts.handled.Load(); n != 0 {
					t.Errorf("handler ran %d times, want 0", n)
				}
				if tt.serverErr != nil {
					select {
					case serr := <-creds.errs:
						if !tt.serverErr(serr) {
							t.Errorf("server handshake err = %v, not the expected kind", serr)
						}
					case <-time.After(rpcTimeout):
						t.Errorf("server handshake did not fail")
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Check() err = %v, want nil", err)
			}
			if n := ts.handled.Load(); n != 1 {
				t.Errorf("handler ran %d times, want 1", n)
			}
			if got := ts.peer.Load(); got == nil || *got != clientID {
				t.Errorf("PeerID() in handler = %v, want %q", got, clientID)
			}
		})
	}
}

// handshakeRecorder passes server handshakes through and records their
// errors.
type handshakeRecorder struct {
	credentials.TransportCredentials
	errs chan error
}

func (h *handshakeRecorder) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := h.TransportCredentials.ServerHandshake(c)
	if err != nil {
		select {
		case h.errs <- err:
		default:
		}
	}
	return conn, info, err
}

func (h *handshakeRecorder) Clone() credentials.TransportCredentials {
	return &handshakeRecorder{TransportCredentials: h.TransportCredentials.Clone(), errs: h.errs}
}

func isInvalidCert(reason x509.InvalidReason) func(error) bool {
	return func(err error) bool {
		var invalid x509.CertificateInvalidError
		return errors.As(err, &invalid) && invalid.Reason == reason
	}
}

func isUnknownAuthority(err error) bool {
	var unknown x509.UnknownAuthorityError
	return errors.As(err, &unknown)
}

func TestPeerID_NoPeer(t *testing.T) {
	t.Parallel()
	if id, ok := spiffe.PeerID(context.Background()); ok {
		t.Errorf("PeerID(no peer) = %q, true; want false", id)
	}
}

// TestCredentials_Rotation checks that both sides read the source on every
// handshake: swapping the SVID in the source changes what the next
// connection presents, with no new credentials object.
func TestCredentials_Rotation(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	bundle := ca.Bundle()
	serverSrc := newMemSource(issue(t, ca, serverID, devca.IssueOptions{}), bundle)
	clientSrc := newMemSource(issue(t, ca, clientID, devca.IssueOptions{}), bundle)

	var seenByServer, seenByClient serialRecorder
	ts := startServer(t, spiffe.ServerCredentials(serverSrc, seenByServer.wrap(tlsconfig.AuthorizeMemberOf(testTD))))
	clientCreds := spiffe.ClientCredentials(clientSrc, seenByClient.wrap(tlsconfig.AuthorizeID(serverID)))

	for round := range 3 {
		if round > 0 {
			serverSrc.svid.Store(issue(t, ca, serverID, devca.IssueOptions{}))
			clientSrc.svid.Store(issue(t, ca, clientID, devca.IssueOptions{}))
		}
		if err := check(t, ts.addr, clientCreds); err != nil {
			t.Fatalf("round %d: Check() err = %v", round, err)
		}
		clientSVID, _ := clientSrc.GetX509SVID()
		serverSVID, _ := serverSrc.GetX509SVID()
		if got, want := seenByServer.get(), serialOf(clientSVID); got.Cmp(want) != 0 {
			t.Errorf("round %d: server saw client serial %s, want %s", round, got, want)
		}
		if got, want := seenByClient.get(), serialOf(serverSVID); got.Cmp(want) != 0 {
			t.Errorf("round %d: client saw server serial %s, want %s", round, got, want)
		}
	}
}

func TestServerTLSConfig(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	bundle := ca.Bundle()
	src := newMemSource(issue(t, ca, serverID, devca.IssueOptions{}), bundle)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || len(r.TLS.PeerCertificates) != 0 {
				http.Error(w, "unexpected client certificate state", http.StatusTeapot)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}),
		TLSConfig:         spiffe.ServerTLSConfig(src),
		ReadHeaderTimeout: rpcTimeout,
	}
	go func() { _ = srv.ServeTLS(lis, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	client := &http.Client{
		Timeout: rpcTimeout,
		Transport: &http.Transport{
			TLSClientConfig:   tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(serverID)),
			DisableKeepAlives: true, // every request is a new handshake
		},
	}
	url := "https://" + lis.Addr().String() + "/"
	for round := range 2 {
		if round > 0 {
			src.svid.Store(issue(t, ca, serverID, devca.IssueOptions{}))
		}
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("round %d: GET err = %v", round, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("round %d: GET status = %d, want 200", round, resp.StatusCode)
		}
		svid, _ := src.GetX509SVID()
		if got, want := resp.TLS.PeerCertificates[0].SerialNumber, serialOf(svid); got.Cmp(want) != 0 {
			t.Errorf("round %d: server presented serial %s, want %s", round, got, want)
		}
	}
}
