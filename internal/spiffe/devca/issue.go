package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultTTL is the lifetime of an issued SVID when IssueOptions.TTL is zero.
const DefaultTTL = 24 * time.Hour

// IssueOptions tunes an issued X509-SVID. The zero value issues a 24-hour
// SVID, valid from now, with a fresh ECDSA P-256 key.
type IssueOptions struct {
	// TTL is the lifetime from NotBefore. Zero means DefaultTTL. The
	// resulting NotAfter is capped at the CA certificate's NotAfter.
	TTL time.Duration
	// NotBefore overrides the start of validity. Zero means the CA's clock.
	NotBefore time.Time
	// NotAfter overrides the end of validity (TTL is then ignored and no cap
	// applies). Tests use NotBefore/NotAfter to mint expired and
	// not-yet-valid SVIDs.
	NotAfter time.Time
	// Key is the SVID's key pair. Nil means a fresh ECDSA P-256 key. To be
	// written by WriteSVID it must be an ECDSA, RSA or Ed25519 private key.
	Key crypto.Signer
}

// Issue mints an X509-SVID for id, signed by the CA. The SVID's certificate
// chain is the leaf only; the CA certificate is in Bundle.
//
// Issue returns ErrTrustDomainMismatch if id is not in the CA's trust domain
// and ErrInvalid if id has no path (the X509-SVID spec forbids leaf SVIDs for
// the trust domain itself), the TTL is negative or the validity window is
// empty.
func (ca *CA) Issue(id spiffeid.ID, opts IssueOptions) (*x509svid.SVID, error) {
	switch {
	case id.IsZero() || id.Path() == "":
		return nil, fmt.Errorf("devca: issue SVID %q: SPIFFE ID must have a path: %w", id, ErrInvalid)
	case !id.MemberOf(ca.td):
		return nil, fmt.Errorf("devca: issue SVID %q: CA is for %q: %w", id, ca.td, ErrTrustDomainMismatch)
	case opts.TTL < 0:
		return nil, fmt.Errorf("devca: issue SVID %q: negative ttl %s: %w", id, opts.TTL, ErrInvalid)
	}

	notBefore := opts.NotBefore
	if notBefore.IsZero() {
		notBefore = ca.now()
	}
	notAfter := opts.NotAfter
	if notAfter.IsZero() {
		ttl := opts.TTL
		if ttl == 0 {
			ttl = DefaultTTL
		}
		notAfter = notBefore.Add(ttl)
		if notAfter.After(ca.cert.NotAfter) {
			notAfter = ca.cert.NotAfter
		}
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("devca: issue SVID %q: not after %s is not after not before %s: %w",
			id, notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339), ErrInvalid)
	}

	key := opts.Key
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("devca: issue SVID %q: generate key: %w", id, err)
		}
		key = k
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}

	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Writ development CA (not for production)"}},
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("devca: issue SVID %q: create certificate: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devca: issue SVID %q: parse certificate: %w", id, err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}, nil
}
