package spiffe

import (
	"errors"
	"net"
	"sync"
	"time"
)

var errNotTLS = errors.New("spiffe: handshake did not produce a TLS connection")

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
