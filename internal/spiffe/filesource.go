package spiffe

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultPollInterval is how often a FileSource checks its files for changes
// when FileConfig.Interval is zero.
const DefaultPollInterval = 5 * time.Second

// FileConfig configures NewFileSource.
type FileConfig struct {
	// CertFile holds the X509-SVID certificate chain as PEM, leaf first.
	// Required.
	CertFile string
	// KeyFile holds the SVID's private key as a PKCS#8 "PRIVATE KEY" PEM
	// block (ECDSA, RSA or Ed25519). Required.
	KeyFile string
	// BundleFile holds the trust bundle's CA certificates as PEM. Required.
	BundleFile string
	// TrustDomain is the trust domain the bundle belongs to. Zero means the
	// SVID's own trust domain, in which case the SVID must also verify
	// against the bundle.
	TrustDomain spiffeid.TrustDomain
	// Interval is how often the files are checked for changes (size,
	// modification time or inode). Zero means DefaultPollInterval.
	Interval time.Duration
	// Now is the clock used to check the SVID's validity. Nil means time.Now.
	Now func() time.Time
	// Logger receives reload events. Nil discards them. Key material is never
	// logged.
	Logger *slog.Logger
}

// FileSource is a Source backed by PEM files that are re-read when they
// change, for hosts without a Workload API and for `writd dev`. It is safe
// for concurrent use: each reload is validated in full and then swapped in
// atomically, and a reload that fails leaves the previous SVID and bundle in
// service. The caller must Close it to stop the polling goroutine.
type FileSource struct {
	cfg     FileConfig
	log     *slog.Logger
	current atomic.Pointer[fileSnapshot]
	closed  atomic.Bool

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var _ Source = (*FileSource)(nil)

type fileSnapshot struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

// NewFileSource loads and validates the SVID, key and bundle named in cfg and
// starts polling them for changes every cfg.Interval.
//
// Every error names the offending file. NewFileSource returns ErrConfig for a
// missing path or a negative interval, an error satisfying
// errors.Is(err, fs.ErrNotExist) for a missing file, ErrKeyMismatch if the
// key is not the leaf's, ErrNotCurrent if the leaf is expired or not yet
// valid, and ErrInvalidSVID for anything else that is not a valid X509-SVID
// (including a chain that does not verify against the bundle of its own trust
// domain).
//
// ctx bounds only the initial load; its values (not its cancellation) are
// passed to the logger for reload events.
func NewFileSource(ctx context.Context, cfg FileConfig) (*FileSource, error) {
	switch {
	case cfg.CertFile == "" || cfg.KeyFile == "" || cfg.BundleFile == "":
		return nil, fmt.Errorf("spiffe: file source: CertFile, KeyFile and BundleFile are required: %w", ErrConfig)
	case cfg.Interval < 0:
		return nil, fmt.Errorf("spiffe: file source: negative interval %s: %w", cfg.Interval, ErrConfig)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultPollInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("spiffe: file source: %w", err)
	}

	s := &FileSource{cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	stamps := s.stat()
	snap, err := s.load()
	if err != nil {
		return nil, err
	}
	s.current.Store(snap)

	pollCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	go s.poll(pollCtx, stamps)
	return s, nil
}

// GetX509SVID returns the most recently loaded valid SVID. It implements
// x509svid.Source. It returns ErrClosed after Close.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("spiffe: get X509-SVID: %w", ErrClosed)
	}
	return s.current.Load().svid, nil
}

// GetX509BundleForTrustDomain returns the bundle if td is the bundle's trust
// domain, and an error otherwise. It implements x509bundle.Source. It returns
// ErrClosed after Close.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("spiffe: get X.509 bundle: %w", ErrClosed)
	}
	b, err := s.current.Load().bundle.GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("spiffe: %w", err)
	}
	return b, nil
}

// Close stops polling and waits for the polling goroutine to exit. Later
// calls to the getters return ErrClosed. Close is idempotent and always
// returns nil.
func (s *FileSource) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stop()
		<-s.done
	})
	return nil
}

// poll reloads the files whenever their stamps change, until ctx is done.
//
// A failed reload is reported only if the files are still unchanged one
// interval later: a rotation that renames three files one after another can
// be caught half way (a new key beside the old certificate), and the next
// change completes it. A file that stays broken is reported once, not every
// interval, and the next change triggers another attempt.
func (s *FileSource) poll(ctx context.Context, last [3]fileStamp) {
	defer close(s.done)
	ticker := time.NewTicker(s.cfg.Interval)
	defer ticker.Stop()
	var pending error // failure of the load for last, not yet reported
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		stamps := s.stat()
		if stamps == last {
			if pending != nil {
				s.warnReload(ctx, pending)
				pending = nil
			}
			continue
		}
		last = stamps
		snap, err := s.load()
		if err != nil {
			pending = err
			continue
		}
		pending = nil
		s.current.Store(snap)
		leaf := snap.svid.Certificates[0]
		s.log.InfoContext(ctx, "reloaded SVID files",
			slog.String("cert_file", s.cfg.CertFile),
			slog.String("spiffe_id", snap.svid.ID.String()),
			slog.String("serial", leaf.SerialNumber.String()),
			slog.Time("not_after", leaf.NotAfter))
	}
}

// warnReload logs a failed reload. err names the file at fault; it never
// carries key material, as load reports only what is wrong with a key.
func (s *FileSource) warnReload(ctx context.Context, err error) {
	prev := s.current.Load().svid
	s.log.WarnContext(ctx, "reload of SVID files failed; still serving the previous SVID",
		slog.String("cert_file", s.cfg.CertFile),
		slog.String("key_file", s.cfg.KeyFile),
		slog.String("bundle_file", s.cfg.BundleFile),
		slog.String("spiffe_id", prev.ID.String()),
		slog.String("serial", prev.Certificates[0].SerialNumber.String()),
		slog.Time("not_after", prev.Certificates[0].NotAfter),
		slog.Any("error", err))
}

// fileStamp identifies one version of a file. A rename over the file (as
// atomic writers do) changes the inode even when size and time are equal.
type fileStamp struct {
	exists bool
	size   int64
	mtime  time.Time
	dev    uint64
	ino    uint64
}

func (s *FileSource) stat() [3]fileStamp {
	var out [3]fileStamp
	for i, p := range [3]string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.BundleFile} {
		info, err := os.Stat(p)
		if err != nil {
			continue
		}
		dev, ino := fileID(info)
		out[i] = fileStamp{exists: true, size: info.Size(), mtime: info.ModTime(), dev: dev, ino: ino}
	}
	return out
}

// load reads and validates all three files. Every error names its file.
func (s *FileSource) load() (*fileSnapshot, error) {
	cfg := s.cfg
	certPEM, err := os.ReadFile(cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("spiffe: read SVID certificate: %w", err)
	}
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		return nil, fmt.Errorf("spiffe: SVID certificate %s: %w: %w", cfg.CertFile, ErrInvalidSVID, err)
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("spiffe: SVID certificate %s: %w: %w", cfg.CertFile, ErrInvalidSVID, err)
	}
	if now := cfg.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("spiffe: SVID certificate %s for %s is valid from %s to %s, not at %s: %w",
			cfg.CertFile, id, leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339),
			now.UTC().Format(time.RFC3339), ErrNotCurrent)
	}

	keyPEM, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("spiffe: read SVID key: %w", err)
	}
	pub, err := parsePublicKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("spiffe: SVID key %s: %w: %w", cfg.KeyFile, ErrInvalidSVID, err)
	}
	if !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("spiffe: SVID key %s does not belong to the certificate in %s: %w",
			cfg.KeyFile, cfg.CertFile, ErrKeyMismatch)
	}
	// go-spiffe applies the rest of the X509-SVID rules (key usage, CA flags,
	// a path in the ID, intermediates that are CAs).
	svid, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("spiffe: SVID certificate %s: %w: %w", cfg.CertFile, ErrInvalidSVID, err)
	}

	td := cfg.TrustDomain
	if td.IsZero() {
		td = id.TrustDomain()
	}
	bundlePEM, err := os.ReadFile(cfg.BundleFile)
	if err != nil {
		return nil, fmt.Errorf("spiffe: read trust bundle: %w", err)
	}
	bundle, err := x509bundle.Parse(td, bundlePEM)
	if err != nil {
		return nil, fmt.Errorf("spiffe: trust bundle %s: %w: %w", cfg.BundleFile, ErrInvalidSVID, err)
	}
	if bundle.Empty() {
		return nil, fmt.Errorf("spiffe: trust bundle %s: no certificates: %w", cfg.BundleFile, ErrInvalidSVID)
	}
	if td == id.TrustDomain() {
		if _, _, err := x509svid.Verify(svid.Certificates, bundle, x509svid.WithTime(cfg.Now())); err != nil {
			return nil, fmt.Errorf("spiffe: SVID certificate %s does not verify against trust bundle %s: %w: %w",
				cfg.CertFile, cfg.BundleFile, ErrInvalidSVID, err)
		}
	}
	return &fileSnapshot{svid: svid, bundle: bundle}, nil
}

// parseLeaf returns the first certificate in a PEM chain.
func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse leaf certificate: %w", err)
		}
		return leaf, nil
	}
}

// parsePublicKey parses a PKCS#8 PEM private key and returns only its public
// half, so that no caller can end up logging the private key.
func parsePublicKey(keyPEM []byte) (interface{ Equal(crypto.PublicKey) bool }, error) {
	block, _ := pem.Decode(keyPEM)
	switch {
	case block == nil:
		return nil, errors.New("no PEM block")
	case block.Type != "PRIVATE KEY":
		return nil, fmt.Errorf("PEM block is %q, want PKCS#8 \"PRIVATE KEY\"", block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("malformed PKCS#8 private key")
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, fmt.Errorf("unsupported public key type %T", signer.Public())
	}
	return pub, nil
}
