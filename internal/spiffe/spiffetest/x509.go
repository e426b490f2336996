package spiffetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// CA is an X.509 authority of a trust domain that mints X509-SVIDs as a
// SPIRE server does and, through a mutate function, ones that break the
// X509-SVID and SPIFFE-ID specifications: any URI SAN text, a CA leaf, wrong
// key usages, missing extensions. Validity is on the wall clock, as TLS
// checks it.
type CA struct {
	td    spiffeid.TrustDomain
	cert  *x509.Certificate
	key   crypto.Signer
	chain [][]byte // DER of cert and its issuers below the root; empty for the root
	root  *CA
}

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 15}
)

// NewCA returns a self-signed root CA for td whose SPIFFE ID is the trust
// domain's own ID, valid from a minute ago for a day.
func NewCA(t testing.TB, td spiffeid.TrustDomain) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{"spiffetest CA"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtraExtensions:       []pkix.Extension{URISANExtension(t, false, td.IDString())},
	}
	cert := create(t, tmpl, tmpl, key.Public(), key)
	ca := &CA{td: td, cert: cert, key: key}
	ca.root = ca
	return ca
}

// Bundle returns an X.509 bundle of the trust domain holding the root.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.root.cert})
}

// Intermediate returns a CA signed by ca, a valid signing certificate whose
// SPIFFE ID is the trust domain's, changed by mutate (may be nil) before it
// is signed. Leaves it mints carry it in their chain.
func (ca *CA) Intermediate(t testing.TB, mutate func(*x509.Certificate)) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{"spiffetest intermediate"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(12 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtraExtensions:       []pkix.Extension{URISANExtension(t, false, ca.td.IDString())},
	}
	if mutate != nil {
		mutate(tmpl)
	}
	cert := create(t, tmpl, ca.cert, key.Public(), ca.key)
	return &CA{td: ca.td, cert: cert, key: key, chain: append([][]byte{cert.Raw}, ca.chain...), root: ca.root}
}

// Leaf mints a leaf X509-SVID whose only URI SAN is uri, written into the
// certificate byte for byte (so it may be any text), with the properties the
// X509-SVID specification requires: a Subject, basic constraints with cA
// false, a critical key usage with only digitalSignature, and the serverAuth
// and clientAuth extended key usages. mutate (may be nil) changes the
// template before it is signed. The result holds the leaf and ca's
// intermediates, ready to present in a TLS handshake.
func (ca *CA) Leaf(t testing.TB, uri string, mutate func(*x509.Certificate)) tls.Certificate {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{"spiffetest workload"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		ExtraExtensions:       []pkix.Extension{URISANExtension(t, false, uri)},
	}
	if mutate != nil {
		mutate(tmpl)
	}
	cert := create(t, tmpl, ca.cert, key.Public(), ca.key)
	return tls.Certificate{Certificate: append([][]byte{cert.Raw}, ca.chain...), PrivateKey: key}
}

// URISANExtension returns a subject alternative name extension holding
// exactly the given URIs, byte for byte, to put in ExtraExtensions (it then
// replaces the one crypto/x509 would build from URIs).
func URISANExtension(t testing.TB, critical bool, uris ...string) pkix.Extension {
	t.Helper()
	names := make([]asn1.RawValue, 0, len(uris))
	for _, u := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)})
	}
	der, err := asn1.Marshal(names)
	if err != nil {
		t.Fatalf("spiffetest: marshal SAN: %v", err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Critical: critical, Value: der}
}

// KeyUsageExtension returns a key usage extension with the given bits and
// criticality, to put in ExtraExtensions (crypto/x509 always marks the one
// it builds critical).
func KeyUsageExtension(t testing.TB, ku x509.KeyUsage, critical bool) pkix.Extension {
	t.Helper()
	var b [2]byte
	n := 0
	for i := 0; i < 9; i++ {
		if ku&(1<<i) != 0 {
			b[i/8] |= 0x80 >> (i % 8)
			n = i + 1
		}
	}
	der, err := asn1.Marshal(asn1.BitString{Bytes: b[:(n+7)/8], BitLength: n})
	if err != nil {
		t.Fatalf("spiffetest: marshal key usage: %v", err)
	}
	return pkix.Extension{Id: oidKeyUsage, Critical: critical, Value: der}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("spiffetest: generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("spiffetest: serial: %v", err)
	}
	return n
}

func create(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("spiffetest: create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		// Some malformed SANs do not parse; keep the bytes for the test.
		return &x509.Certificate{Raw: der}
	}
	return cert
}
