package spiffe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// PanicHandler is told about a panic recovered during a TLS handshake:
// where it happened and the value recovered. The connection is closed; the
// process keeps serving. It must not panic itself.
type PanicHandler func(where string, recovered any)

// Option configures the credentials of this package.
type Option func(*options)

type options struct {
	onPanic PanicHandler
}

// WithPanicHandler makes h hear of every panic recovered during a handshake
// (for a metric and a log line). Without it, panics are logged with
// slog.Default.
func WithPanicHandler(h PanicHandler) Option {
	return func(o *options) {
		if h != nil {
			o.onPanic = h
		}
	}
}

func newOptions(opts []Option) *options {
	o := &options{onPanic: logPanic}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// logPanic is the default PanicHandler.
func logPanic(where string, recovered any) {
	slog.Default().Error("recovered from a panic; the connection was closed",
		slog.String("where", where), slog.String("panic", fmt.Sprintf("%q", fmt.Sprint(recovered))),
		slog.String("stack", string(debug.Stack())))
}

// errPanic is the handshake error of a connection whose handshake panicked.
var errPanic = errors.New("spiffe: internal error during the TLS handshake; connection closed")

// ServerCredentials returns gRPC server credentials for mutual TLS: the
// server presents src's current SVID, and every client must present an
// X509-SVID that VerifyX509SVID accepts against src's bundle (every MUST of
// the SPIFFE-ID and X509-SVID specifications, then path validation) and
// that authorize accepts. Clients without a certificate, plaintext clients,
// and expired, not-yet-valid, foreign-signed or malformed SVIDs fail the
// handshake, so no handler runs for them.
//
// The SVID and bundle are read from src on every handshake, so rotation
// needs no restart. A nil authorize rejects every client (fail closed).
//
// A panic anywhere in a handshake (a certificate callback, the TLS stack)
// is recovered: that connection fails and is closed, the PanicHandler is
// told, and the server keeps serving.
//
// Each connection is closed when the client's SVID expires, so a client
// whose SVID is no longer renewed (its registration was deleted) loses
// access then even on a busy connection; a client with a rotated SVID
// reconnects and presents it.
func ServerCredentials(src Source, authorize tlsconfig.Authorizer, opts ...Option) credentials.TransportCredentials {
	o := newOptions(opts)
	cfg := tlsconfig.MTLSServerConfig(src, src, orDenyAll(authorize))
	cfg.GetCertificate = guardGetCertificate(o, cfg.GetCertificate)
	cfg.VerifyPeerCertificate = guardVerify(o, "verify client X509-SVID", verifyPeer(src, orDenyAll(authorize)))
	return &svidCreds{tls: credentials.NewTLS(cfg), opts: o, peerSVID: true, closeOnExpiry: true}
}

// ServerTLSCredentials returns gRPC server credentials for TLS in which the
// server presents src's current SVID and asks for no client certificate;
// callers authenticate with a bearer token instead (the admin and JWT-SVID
// listeners). Handshake panics are recovered as by ServerCredentials.
func ServerTLSCredentials(src Source, opts ...Option) credentials.TransportCredentials {
	o := newOptions(opts)
	cfg := ServerTLSConfig(src)
	cfg.GetCertificate = guardGetCertificate(o, cfg.GetCertificate)
	return &svidCreds{tls: credentials.NewTLS(cfg), opts: o}
}

// ClientCredentials returns gRPC client credentials for mutual TLS: the
// client presents src's current SVID and accepts only a server whose SVID
// VerifyX509SVID accepts against src's bundle and that server accepts, for
// example tlsconfig.AuthorizeID(brokerID). Host names are not checked; the
// SPIFFE ID is the server's identity.
//
// The SVID and bundle are read from src on every handshake. A nil server
// authorizer rejects every server (fail closed).
func ClientCredentials(src Source, server tlsconfig.Authorizer, opts ...Option) credentials.TransportCredentials {
	o := newOptions(opts)
	cfg := tlsconfig.MTLSClientConfig(src, src, orDenyAll(server))
	cfg.VerifyPeerCertificate = guardVerify(o, "verify server X509-SVID", verifyPeer(src, orDenyAll(server)))
	return &svidCreds{tls: credentials.NewTLS(cfg), opts: o, peerSVID: true}
}

// PeerID returns the SPIFFE ID of the peer of the gRPC call in ctx, as
// verified during the mutual TLS handshake by ServerCredentials or
// ClientCredentials. It reports false if the connection was not made with
// those credentials or the peer presented no SPIFFE ID.
func PeerID(ctx context.Context) (spiffeid.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, false
	}
	info, ok := p.AuthInfo.(PeerInfo)
	if !ok || info.ID.IsZero() {
		return spiffeid.ID{}, false
	}
	return info.ID, true
}

// PeerInfo is the credentials.AuthInfo of a connection made with this
// package's credentials: the TLS state and, with mutual TLS, the peer's
// verified SPIFFE ID.
type PeerInfo struct {
	credentials.TLSInfo
	// ID is the peer's SPIFFE ID; zero when the peer presented no SVID.
	ID spiffeid.ID
}

// ServerTLSConfig returns a TLS configuration for an HTTPS listener that
// presents src's current SVID (read on every handshake) and neither requests
// nor verifies client certificates. Authenticate HTTP clients some other
// way.
func ServerTLSConfig(src Source) *tls.Config {
	return tlsconfig.TLSServerConfig(src)
}

// svidCreds are gRPC transport credentials over crypto/tls that verify the
// peer with VerifyX509SVID, take the peer's SPIFFE ID from that
// verification (never from gRPC's own SPIFFE ID parsing, which yields no ID
// for some certificates go-spiffe accepts, such as a trust domain's root
// ID), and recover from panics during the handshake.
type svidCreds struct {
	tls           credentials.TransportCredentials
	opts          *options
	peerSVID      bool // the peer presents an X509-SVID
	closeOnExpiry bool // close the connection when the peer's chain expires
}

func (c *svidCreds) ServerHandshake(raw net.Conn) (conn net.Conn, info credentials.AuthInfo, err error) {
	defer c.recoverHandshake("TLS server handshake", raw, &conn, &info, &err)
	// The raw connection is passed on without its syscall.Conn method, so
	// gRPC's TLS credentials return the *tls.Conn itself.
	conn, info, err = c.tls.ServerHandshake(plainConn{raw})
	if err != nil {
		return nil, nil, err
	}
	return c.finish(conn, info)
}

func (c *svidCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (conn net.Conn, info credentials.AuthInfo, err error) {
	defer c.recoverHandshake("TLS client handshake", raw, &conn, &info, &err)
	conn, info, err = c.tls.ClientHandshake(ctx, authority, plainConn{raw})
	if err != nil {
		return nil, nil, err
	}
	return c.finish(conn, info)
}

// recoverHandshake turns a panic in a handshake into a failed handshake of
// that connection alone.
func (c *svidCreds) recoverHandshake(where string, raw net.Conn, conn *net.Conn, info *credentials.AuthInfo, err *error) {
	r := recover()
	if r == nil {
		return
	}
	c.opts.onPanic(where, r)
	_ = raw.Close()
	*conn, *info, *err = nil, nil, errPanic
}

var errNoPeerSVID = errors.New("spiffe: handshake completed without a verified peer X509-SVID")

// finish wraps a completed handshake: the peer's ID in the AuthInfo and,
// for servers, a connection closed when the peer's chain expires. It fails
// closed if anything is missing.
func (c *svidCreds) finish(conn net.Conn, info credentials.AuthInfo) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := conn.(*tls.Conn)
	tlsInfo, ok2 := info.(credentials.TLSInfo)
	if !ok || !ok2 {
		_ = conn.Close()
		return nil, nil, errNotTLS
	}
	out := PeerInfo{TLSInfo: tlsInfo}
	if !c.peerSVID {
		return conn, out, nil
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		_ = conn.Close()
		return nil, nil, errNoPeerSVID
	}
	// The verify callback accepted this leaf; read its ID the same way.
	id, err := checkLeaf(certs[0])
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("%w: %w", errNoPeerSVID, err)
	}
	out.ID = id
	if !c.closeOnExpiry {
		return conn, out, nil
	}
	notAfter := certs[0].NotAfter
	for _, cert := range certs[1:] {
		if cert.NotAfter.Before(notAfter) {
			notAfter = cert.NotAfter
		}
	}
	return newExpiringConn(conn, notAfter), out, nil
}

func (c *svidCreds) Info() credentials.ProtocolInfo { return c.tls.Info() }

func (c *svidCreds) Clone() credentials.TransportCredentials {
	return &svidCreds{tls: c.tls.Clone(), opts: c.opts, peerSVID: c.peerSVID, closeOnExpiry: c.closeOnExpiry}
}

// OverrideServerName is deprecated in gRPC; host names are not checked here.
func (c *svidCreds) OverrideServerName(string) error { return nil }

// verifyPeer returns a VerifyPeerCertificate callback that checks the
// peer's chain with VerifyX509SVID and then asks authorize.
func verifyPeer(bundles x509bundle.Source, authorize tlsconfig.Authorizer) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		id, chains, err := VerifyX509SVID(raw, bundles, time.Time{})
		if err != nil {
			return err
		}
		return authorize(id, chains)
	}
}

// guardVerify recovers a panic in a certificate verification callback and
// fails the handshake instead.
func guardVerify(o *options, where string, f func([][]byte, [][]*x509.Certificate) error) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, chains [][]*x509.Certificate) (err error) {
		defer func() {
			if r := recover(); r != nil {
				o.onPanic(where, r)
				err = errPanic
			}
		}()
		return f(raw, chains)
	}
}

// guardGetCertificate recovers a panic while fetching the server's SVID.
func guardGetCertificate(o *options, f func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (cert *tls.Certificate, err error) {
		defer func() {
			if r := recover(); r != nil {
				o.onPanic("get server X509-SVID", r)
				cert, err = nil, errPanic
			}
		}()
		return f(hello)
	}
}

var errNoAuthorizer = errors.New("spiffe: no authorizer configured; peer rejected")

// orDenyAll returns a, or an authorizer that rejects every peer if a is nil.
func orDenyAll(a tlsconfig.Authorizer) tlsconfig.Authorizer {
	if a != nil {
		return a
	}
	return func(spiffeid.ID, [][]*x509.Certificate) error { return errNoAuthorizer }
}
