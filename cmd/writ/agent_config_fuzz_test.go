package main

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadAgentConfig decodes any bytes as the agent's configuration file
// (T37): no panic, and whatever loads names a broker and at least one
// credential.
func FuzzLoadAgentConfig(f *testing.F) {
	f.Add([]byte("broker: 127.0.0.1:8443\nbroker_id: spiffe://example.org/writd\nsvid: {socket: unix:///tmp/agent.sock}\ncredentials:\n  - entitlement: orders\n    path: /tmp/orders.jwt\n"))
	f.Add([]byte("broker: [\n"))
	f.Add([]byte("credentials: [{entitlement: x, path: y, template: '{{ .Secret'}]"))
	f.Add([]byte("&a [*a, *a]"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadAgentConfig(path)
		if err != nil {
			return
		}
		if cfg.Broker == "" || len(cfg.Credentials) == 0 {
			t.Fatalf("loadAgentConfig accepted %q without a broker or credentials: %+v", data, cfg)
		}
	})
}
