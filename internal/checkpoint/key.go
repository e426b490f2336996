package checkpoint

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/writ-dev/writ/internal/audit"
)

// KeyFile is the name of the ledger's signing key in the data directory.
const KeyFile = "ledger.key"

// LoadOrCreateKey reads the ledger's signer key from path (a note signer
// key, "PRIVATE+KEY+<origin>+…", mode 0600), creating it with name
// defaultOrigin if the file does not exist. If origin is not empty the
// key's name must equal it: the origin is fixed when the key is created.
// It returns the signer and the verifier key.
func LoadOrCreateKey(path, origin, defaultOrigin string) (note.Signer, string, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		name := origin
		if name == "" {
			name = defaultOrigin
		}
		skey, _, err := audit.GenerateLedgerKey(rand.Reader, name)
		if err != nil {
			return nil, "", err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, "", fmt.Errorf("create ledger key: %w", err)
		}
		_, err = f.WriteString(skey + "\n")
		if err == nil {
			err = f.Sync()
		}
		if err := errors.Join(err, f.Close()); err != nil {
			return nil, "", fmt.Errorf("write ledger key %s: %w", path, err)
		}
	case err != nil:
		return nil, "", fmt.Errorf("ledger key: %w", err)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, "", fmt.Errorf("ledger key %s: mode %v, want 0600 (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("ledger key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("ledger key %s: not a note signer key: %w", path, err)
	}
	if origin != "" && signer.Name() != origin {
		return nil, "", fmt.Errorf("ledger.origin %q is not the name of the ledger key %s (%q): the origin is fixed when the key is created", origin, path, signer.Name())
	}
	vkey, err := audit.VerifierKey(skey)
	if err != nil {
		return nil, "", fmt.Errorf("ledger key %s: %w", path, err)
	}
	return signer, vkey, nil
}
