package jwtissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxKeyFileSize bounds what loadKey reads: a PKCS#8 PEM key for either
// algorithm is a few hundred bytes.
const maxKeyFileSize = 64 << 10

// loadOrCreateKey returns the private key in path, creating the file with a
// fresh key for alg if it does not exist. created reports whether it did.
func loadOrCreateKey(path, alg string) (key crypto.Signer, created bool, err error) {
	key, err = loadKey(path, alg)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	key, err = generateKey(alg)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("encode %s signing key: %w", alg, err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// loadKey reads a PKCS#8 PEM private key for alg from path. It returns an
// error wrapping fs.ErrNotExist if there is no such file, and
// ErrInsecureKeyFile if the file is not a regular file private to its owner.
func loadKey(path, alg string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open signing key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat signing key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("signing key %s is not a regular file (mode %s): %w", path, fi.Mode(), ErrInsecureKeyFile)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s has mode %04o and is readable by group or others; "+
			"if the key may have leaked, delete the file so a new key is generated, otherwise run: chmod 600 %s: %w",
			path, perm, path, ErrInsecureKeyFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("signing key %s is larger than %d bytes; is it the right file?", path, maxKeyFileSize)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: want a PEM \"PRIVATE KEY\" (PKCS#8) block", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse signing key %s: %w", path, err)
	}
	switch k := parsed.(type) {
	case ed25519.PrivateKey:
		if alg == AlgEdDSA {
			return k, nil
		}
		return nil, fmt.Errorf("signing key %s is an Ed25519 key but the algorithm is %s: %w", path, alg, ErrKeyMismatch)
	case *ecdsa.PrivateKey:
		if alg == AlgES256 && k.Curve == elliptic.P256() {
			return k, nil
		}
		return nil, fmt.Errorf("signing key %s is an ECDSA %s key but the algorithm is %s: %w", path, k.Curve.Params().Name, alg, ErrKeyMismatch)
	default:
		return nil, fmt.Errorf("signing key %s holds a %T, want Ed25519 or ECDSA P-256: %w", path, parsed, ErrKeyMismatch)
	}
}

// generateKey returns a new private key for alg.
func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgEdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate Ed25519 key: %w", err)
		}
		return k, nil
	case AlgES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate P-256 key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
}

// writeFileAtomic writes data to path with mode 0600: into a temporary file in
// the same directory, synced, then renamed over path, so a crash never leaves
// a truncated key behind.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create signing key in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod signing key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync signing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close signing key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install signing key %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		// Make the rename durable; not every file system supports syncing a
		// directory, and the key is already in place, so errors are ignored.
		_ = d.Sync()
		d.Close()
	}
	return nil
}
