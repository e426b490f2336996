package devca

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// File names written by WriteSVID.
const (
	// SVIDFileName holds the SVID certificate chain, leaf first.
	SVIDFileName = "svid.pem"
	// SVIDKeyFileName holds the SVID's PKCS#8 private key (mode 0600).
	SVIDKeyFileName = "svid_key.pem"
	// BundleFileName holds the trust bundle's CA certificates.
	BundleFileName = "bundle.pem"
)

// Files are the paths WriteSVID wrote. They match the CertFile, KeyFile and
// BundleFile fields of internal/spiffe.FileConfig.
type Files struct {
	// Cert is the SVID certificate chain, leaf first.
	Cert string
	// Key is the SVID's PKCS#8 private key, mode 0600.
	Key string
	// Bundle is the trust bundle.
	Bundle string
}

// WriteSVID writes svid and bundle to dir (created with mode 0700 if needed)
// as svid.pem, svid_key.pem (mode 0600) and bundle.pem. Each file is replaced
// atomically (written to a temporary file in dir, synced, then renamed), so
// a reader never sees a partly written file, although it may briefly see a
// new bundle beside the old SVID, or a new key beside the old certificate.
// internal/spiffe.FileSource rides this out by reloading on the next change.
func WriteSVID(dir string, svid *x509svid.SVID, bundle *x509bundle.Bundle) (Files, error) {
	if svid == nil || bundle == nil {
		return Files{}, fmt.Errorf("devca: write SVID: svid and bundle are required: %w", ErrInvalid)
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return Files{}, fmt.Errorf("devca: write SVID %q: %w", svid.ID, err)
	}
	bundlePEM, err := bundle.Marshal()
	if err != nil {
		return Files{}, fmt.Errorf("devca: write bundle %q: %w", bundle.TrustDomain(), err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("devca: write SVID: %w", err)
	}
	files := Files{
		Cert:   filepath.Join(dir, SVIDFileName),
		Key:    filepath.Join(dir, SVIDKeyFileName),
		Bundle: filepath.Join(dir, BundleFileName),
	}
	// Bundle first: peers' new SVIDs may already chain to a new authority.
	if err := writeFileAtomic(files.Bundle, bundlePEM, 0o644); err != nil {
		return Files{}, err
	}
	if err := writeFileAtomic(files.Key, keyPEM, 0o600); err != nil {
		return Files{}, err
	}
	if err := writeFileAtomic(files.Cert, certPEM, 0o644); err != nil {
		return Files{}, err
	}
	return files, nil
}

// writeFileAtomic replaces path with data by writing a temporary file in the
// same directory, syncing it, setting perm and renaming it over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("devca: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	// CreateTemp uses 0600; set the final mode before any data is written so
	// a key is never readable by others, even briefly.
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return fmt.Errorf("devca: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("devca: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("devca: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("devca: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("devca: write %s: %w", path, err)
	}
	return nil
}
