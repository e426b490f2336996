package daemon

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	if err := os.Chmod("testdata/token", 0o600); err != nil { // git does not keep modes
		t.Fatal(err)
	}
	if err := os.Chmod("testdata/token-open", 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		wantErr []string // every one must appear; empty means valid
	}{
		{name: "valid file", file: "testdata/valid.yaml"},
		{name: "missing file", file: "testdata/nope.yaml", wantErr: []string{"read config", "no such file"}},
		{name: "unknown key names the line", file: "testdata/unknown-key.yaml", wantErr: []string{"testdata/unknown-key.yaml", "line 5", "listne"}},
		{name: "cert auth needs https", file: "testdata/vault-auth.yaml", wantErr: []string{"vault.auth.method: cert auth needs TLS"}},
		{name: "unknown vault auth method", file: "testdata/vault-auth-bad.yaml", wantErr: []string{`vault.auth.method: "kerberos" is not token, cert or approle`}},
		{name: "token_file and auth together", file: "testdata/vault-auth-approle.yaml", wantErr: []string{"use either vault.token_file or vault.auth"}},
		{name: "every problem reported at once", file: "testdata/many-errors.yaml", wantErr: []string{
			`listen: "nope" is not host:port`,
			`http.listen: "0.0.0.0:8080" is not a loopback address: plain HTTP is allowed only on loopback`,
			"svid: set either workload_api_socket or cert_file/key_file/bundle_file, not both",
			"policy: is required",
			`jwt.algorithm: "HS256" is not supported (EdDSA or ES256)`,
			`jwt.issuer: "ftp://x" must be an http(s) URL`,
			"vault.address: \"http://vault.example.org:8200\" uses plain HTTP to a non-loopback host",
			"vault.token_file: testdata/token-open is readable by group or others",
			`log.level: "loud"`,
			`log.format: "xml"`,
			"shutdown_timeout: must be positive",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(tt.file)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("LoadConfig(%s) = %v, want nil", tt.file, err)
				}
				if cfg.Vault.Timeout != 10*time.Second || cfg.ShutdownTimeout != 30*time.Second || cfg.Log.Format != "json" {
					t.Errorf("defaults not applied: %+v", cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadConfig(%s) = nil, want errors %q", tt.file, tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("LoadConfig(%s) error lacks %q:\n%v", tt.file, want, err)
				}
			}
		})
	}
}

func TestConfig_Validate_SVIDRequired(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Policy = "p.yaml"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "svid: set workload_api_socket") {
		t.Errorf("Validate() = %v, want the missing SVID source named", err)
	}
}
