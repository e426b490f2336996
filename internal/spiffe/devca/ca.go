package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// File names used inside a CA directory.
const (
	// CertFileName is the PEM file holding the self-signed CA certificate.
	CertFileName = "ca.pem"
	// KeyFileName is the PEM file (PKCS#8, mode 0600) holding the CA key.
	KeyFileName = "ca_key.pem"
)

// DefaultValidity is how long a new CA certificate is valid.
const DefaultValidity = 365 * 24 * time.Hour

// CA is a development certificate authority for one trust domain. It is safe
// for concurrent use. See the package documentation for why it must not be
// used in production.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
	now  func() time.Time
}

// Option configures New, Create and Load.
type Option func(*options)

type options struct {
	now      func() time.Time
	validity time.Duration
}

// WithNow sets the clock used for the CA's validity period, for the default
// NotBefore of issued SVIDs and for the expiry check in Load. The default is
// time.Now.
func WithNow(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithValidity sets how long a new CA certificate is valid. The default is
// DefaultValidity (one year). It has no effect on Load.
func WithValidity(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.validity = d
		}
	}
}

func newOptions(opts []Option) options {
	o := options{now: time.Now, validity: DefaultValidity}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// New generates an in-memory CA for td with a fresh ECDSA P-256 key. Nothing
// is written to disk; use Create or LoadOrCreate for a persistent CA.
func New(td spiffeid.TrustDomain, opts ...Option) (*CA, error) {
	if td.IsZero() {
		return nil, fmt.Errorf("devca: new CA: empty trust domain: %w", ErrInvalid)
	}
	o := newOptions(opts)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devca: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notBefore := o.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Writ development CA (not for production)"},
			CommonName:   td.Name(),
		},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(o.validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("devca: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devca: parse CA certificate: %w", err)
	}
	return &CA{td: td, cert: cert, key: key, now: o.now}, nil
}

// Create generates a new CA for td and persists it in dir as ca.pem and
// ca_key.pem (mode 0600), creating dir (mode 0700) if needed. It returns
// ErrExists if either file is already present; it never overwrites a CA.
func Create(dir string, td spiffeid.TrustDomain, opts ...Option) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("devca: create CA in %s: %s: %w", dir, p, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("devca: create CA in %s: %w", dir, err)
		}
	}
	ca, err := New(td, opts...)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("devca: marshal CA key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devca: create CA directory: %w", err)
	}
	// The key goes first, so an interrupted Create never leaves a CA
	// certificate without its key; either way Load reports the missing file.
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// Load reads a CA persisted by Create from dir. The trust domain is taken
// from the CA certificate's URI SAN. Load returns ErrExpired if the
// certificate is not valid at the clock's current time, ErrInvalid if the
// files do not hold a CA certificate and its matching key, and an error
// satisfying errors.Is(err, fs.ErrNotExist) if either file is missing.
func Load(dir string, opts ...Option) (*CA, error) {
	o := newOptions(opts)
	certPath, keyPath := filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)

	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("devca: load CA certificate: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("devca: load CA certificate %s: no CERTIFICATE PEM block: %w", certPath, ErrInvalid)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devca: load CA certificate %s: %w: %w", certPath, ErrInvalid, err)
	}
	if !cert.IsCA || len(cert.URIs) != 1 {
		return nil, fmt.Errorf("devca: load CA certificate %s: not a CA with one trust domain URI SAN: %w", certPath, ErrInvalid)
	}
	td, err := spiffeid.TrustDomainFromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("devca: load CA certificate %s: %w: %w", certPath, ErrInvalid, err)
	}
	if now := o.now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("devca: load CA certificate %s: valid %s to %s: %w",
			certPath, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339), ErrExpired)
	}

	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("devca: load CA key: %w", err)
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("devca: load CA key %s: no PKCS#8 PRIVATE KEY PEM block: %w", keyPath, ErrInvalid)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devca: load CA key %s: %w: %w", keyPath, ErrInvalid, err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("devca: load CA key %s: %T is not a signer: %w", keyPath, parsed, ErrInvalid)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("devca: load CA key %s: does not match certificate %s: %w", keyPath, certPath, ErrInvalid)
	}
	return &CA{td: td, cert: cert, key: key, now: o.now}, nil
}

// LoadOrCreate loads the CA in dir, or creates one for td if dir holds
// neither ca.pem nor ca_key.pem, so that `writd dev` restarts keep trusting
// the SVIDs they issued before. now is the clock (nil means time.Now).
//
// It returns ErrTrustDomainMismatch if the persisted CA is for another trust
// domain, ErrExpired if it has expired, and an error satisfying
// errors.Is(err, fs.ErrNotExist) if only one of the two files exists.
func LoadOrCreate(dir string, td spiffeid.TrustDomain, now func() time.Time) (*CA, error) {
	opts := []Option{WithNow(now)}
	_, certErr := os.Lstat(filepath.Join(dir, CertFileName))
	_, keyErr := os.Lstat(filepath.Join(dir, KeyFileName))
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		return Create(dir, td, opts...)
	}
	ca, err := Load(dir, opts...)
	if err != nil {
		return nil, err
	}
	if ca.td != td {
		return nil, fmt.Errorf("devca: CA in %s is for %q, want %q: %w", dir, ca.td, td, ErrTrustDomainMismatch)
	}
	return ca, nil
}

// TrustDomain returns the trust domain the CA issues SVIDs for.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Certificate returns the CA certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Bundle returns a new X.509 bundle for the CA's trust domain holding the CA
// certificate. Peers verify SVIDs issued by this CA against it.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("devca: generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
