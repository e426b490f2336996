package spiffe

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// closeOnPeerExpiry wraps server credentials so that each connection is
// closed when the earliest certificate of the chain the peer presented
// expires. TLS verifies the peer only during the handshake, so without this
// a client could keep using a connection made with an SVID that has since
// expired (for example after its registration entry was deleted) for as
// long as it keeps the connection busy. A client whose SVID rotated simply
// reconnects, and the new handshake checks the new SVID.
func closeOnPeerExpiry(c credentials.TransportCredentials) credentials.TransportCredentials {
	return expiringCreds{TransportCredentials: c}
}

type expiringCreds struct {
	credentials.TransportCredentials
}

var errNotTLS = errors.New("spiffe: handshake did not produce a TLS connection")

// ServerHandshake runs the wrapped handshake and arms the expiry. The raw
// connection is passed on without its syscall.Conn method, so gRPC's TLS
// credentials return the *tls.Conn itself and its peer certificates can be
// read.
func (c expiringCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(plainConn{raw})
	if err != nil {
		return nil, nil, err
	}
	tc, ok := conn.(*tls.Conn)
	if !ok {
		_ = conn.Close()
		return nil, nil, errNotTLS // fail closed: the expiry could not be armed
	}
	var notAfter time.Time
	for _, cert := range tc.ConnectionState().PeerCertificates {
		if notAfter.IsZero() || cert.NotAfter.Before(notAfter) {
			notAfter = cert.NotAfter
		}
	}
	if notAfter.IsZero() {
		_ = conn.Close()
		return nil, nil, errNotTLS
	}
	return newExpiringConn(conn, notAfter), info, nil
}

// Clone returns a copy that also closes connections on peer expiry.
func (c expiringCreds) Clone() credentials.TransportCredentials {
	return expiringCreds{TransportCredentials: c.TransportCredentials.Clone()}
}

// plainConn hides every method of a connection but net.Conn's.
type plainConn struct{ net.Conn }

// expiringConn is a connection closed at a deadline unless closed before.
type expiringConn struct {
	net.Conn
	timer *time.Timer
	once  sync.Once
	err   error
}

func newExpiringConn(conn net.Conn, at time.Time) *expiringConn {
	c := &expiringConn{Conn: conn}
	// Wall clock: TLS verification checked validity against it too.
	c.timer = time.AfterFunc(time.Until(at), c.closeOnce)
	return c
}

// Close stops the timer and closes the connection once.
func (c *expiringConn) Close() error {
	c.timer.Stop()
	c.closeOnce()
	return c.err
}

func (c *expiringConn) closeOnce() {
	c.once.Do(func() { c.err = c.Conn.Close() })
}
