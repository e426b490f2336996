package spiffe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc/credentials"
)

// ServerCredentials returns gRPC server credentials for mutual TLS: the
// server presents src's current SVID, and every client must present an
// X509-SVID that verifies against src's bundle for the client's trust domain
// and that authorize accepts. Clients without a certificate, plaintext
// clients, and expired, not-yet-valid or foreign-signed SVIDs fail the
// handshake, so no handler runs for them.
//
// The SVID and bundle are read from src on every handshake, so rotation
// needs no restart. A nil authorize rejects every client (fail closed).
//
// Each connection is closed when the client's SVID expires, so a client
// whose SVID is no longer renewed (its registration was deleted) loses
// access then even on a busy connection; a client with a rotated SVID
// reconnects and presents it.
func ServerCredentials(src Source, authorize tlsconfig.Authorizer) credentials.TransportCredentials {
	return closeOnPeerExpiry(grpccredentials.MTLSServerCredentials(src, src, orDenyAll(authorize)))
}

// ClientCredentials returns gRPC client credentials for mutual TLS: the
// client presents src's current SVID and accepts only a server whose SVID
// verifies against src's bundle and that server accepts, for example
// tlsconfig.AuthorizeID(brokerID). Host names are not checked; the SPIFFE ID
// is the server's identity.
//
// The SVID and bundle are read from src on every handshake. A nil server
// authorizer rejects every server (fail closed).
func ClientCredentials(src Source, server tlsconfig.Authorizer) credentials.TransportCredentials {
	return grpccredentials.MTLSClientCredentials(src, src, orDenyAll(server))
}

// PeerID returns the SPIFFE ID of the peer of the gRPC call in ctx, as
// verified during the mutual TLS handshake by ServerCredentials or
// ClientCredentials. It reports false if the connection was not made with
// those credentials or the peer presented no SPIFFE ID.
func PeerID(ctx context.Context) (spiffeid.ID, bool) {
	return grpccredentials.PeerIDFromContext(ctx)
}

// ServerTLSConfig returns a TLS configuration for an HTTPS listener that
// presents src's current SVID (read on every handshake) and neither requests
// nor verifies client certificates. Authenticate HTTP clients some other
// way.
func ServerTLSConfig(src Source) *tls.Config {
	return tlsconfig.TLSServerConfig(src)
}

var errNoAuthorizer = errors.New("spiffe: no authorizer configured; peer rejected")

// orDenyAll returns a, or an authorizer that rejects every peer if a is nil.
func orDenyAll(a tlsconfig.Authorizer) tlsconfig.Authorizer {
	if a != nil {
		return a
	}
	return func(spiffeid.ID, [][]*x509.Certificate) error { return errNoAuthorizer }
}
