package daemon

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig decodes any bytes as writd's configuration file (T37): no
// panic, and whatever loads has passed Validate.
func FuzzLoadConfig(f *testing.F) {
	for _, name := range []string{"valid.yaml", "many-errors.yaml", "unknown-key.yaml", "vault-auth.yaml", "vault-auth-approle.yaml", "vault-auth-bad.yaml"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("listen: [\n"))
	f.Add([]byte("{listen: 127.0.0.1:8443, shutdown_timeout: -1s}"))
	f.Add([]byte("&a [*a, *a]"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "writd.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("LoadConfig accepted a config Validate refuses: %v", err)
		}
	})
}
