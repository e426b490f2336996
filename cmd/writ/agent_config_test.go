package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadAgentConfig(t *testing.T) {
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "") // no parallel: the env var is process-wide
	dir := t.TempDir()
	svidDir := filepath.Join(dir, "svid")
	if err := os.Mkdir(svidDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"svid.pem", "svid_key.pem", "bundle.pem"} {
		if err := os.WriteFile(filepath.Join(svidDir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const head = "broker: 127.0.0.1:8443\nbroker_id: spiffe://writ.dev/writd\n"
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // every one must appear; empty means valid
	}{
		{name: "valid with a socket", yaml: head + `svid: {socket: unix:///run/spire/agent.sock}
metrics_listen: 127.0.0.1:9464
credentials:
  - entitlement: demo
    path: ` + dir + `/demo.jwt
    template: '{{ .Secret }}'
    command: ["sh", "-c", "true"]
    renew_fraction: 0.5
`},
		{name: "valid with a dynamic secret's fields", yaml: head + "svid: {dir: " + svidDir + "}\ncredentials:\n  - entitlement: db\n    path: " + dir + "/pgpass\n    template: 'db.example.org:5432:orders:{{ .Data.username }}:{{ .Data.password }}'\n"},
		{name: "valid with a directory and defaults", yaml: head + "svid: {dir: " + svidDir + "}\ncredentials: [{entitlement: demo, path: " + dir + "/demo.jwt}]\n"},
		{name: "unknown top-level key names the line", yaml: head + "svid: {dir: " + svidDir + "}\nbrokr: x\n", wantErr: []string{"agent.yaml", "line 4", "brokr"}},
		{name: "unknown credential key names the line", yaml: head + "svid: {dir: " + svidDir + "}\ncredentials:\n  - entitlement: demo\n    path: /tmp/x\n    mode: 0644\n", wantErr: []string{"line 7", "mode"}},
		{name: "wrong type names the line", yaml: head + "svid: {dir: " + svidDir + "}\ncredentials:\n  - entitlement: demo\n    renew_fraction: soon\n", wantErr: []string{"line 6", "soon"}},
		{name: "every problem at once, each with its line", yaml: `broker: nope
broker_id: https://writ.dev
svid: {socket: unix:///x.sock, dir: /tmp}
metrics_listen: 9464
credentials:
  - entitlement: demo
    path: /no/such/dir/demo.jwt
    template: '{{ .Secrett }}'
    renew_fraction: 1.5
  - entitlement: demo
    command: [""]
`, wantErr: []string{
			`agent.yaml:1: broker: "nope" is not host:port`,
			`agent.yaml:2: broker_id: "https://writ.dev" is not a SPIFFE ID`,
			"agent.yaml:3: svid: set socket or dir, not both",
			`agent.yaml:4: metrics_listen: "9464" is not host:port`,
			"agent.yaml:7: credentials[0].path: directory /no/such/dir does not exist",
			"agent.yaml:8: credentials[0].template:", "Secrett",
			"agent.yaml:9: credentials[0].renew_fraction: 1.5 is not in (0, 1)",
			`agent.yaml:10: credentials[1].entitlement: "demo" appears twice`,
			"agent.yaml:10: credentials[1].path: is required",
			"agent.yaml:11: credentials[1].command: the program name (first element) is empty",
		}},
		{name: "no SVID source", yaml: head + "credentials: [{entitlement: demo, path: " + dir + "/demo.jwt}]\n", wantErr: []string{"svid: set socket"}},
		{name: "SVID directory without its files", yaml: head + "svid: {dir: " + dir + "}\ncredentials: [{entitlement: demo, path: " + dir + "/demo.jwt}]\n", wantErr: []string{"svid.dir:", "svid.pem"}},
		{name: "no credentials", yaml: head + "svid: {dir: " + svidDir + "}\n", wantErr: []string{"credentials: at least one is required"}},
		{name: "empty file", yaml: "", wantErr: []string{"broker:", "broker_id:", "credentials:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadAgentConfig(path)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("loadAgentConfig() = %v, want nil", err)
				}
				for _, c := range cfg.Credentials {
					if c.tmpl == nil || c.Template == "" {
						t.Errorf("credential %q has no parsed template", c.Entitlement)
					}
				}
				if cfg.brokerID.String() != "spiffe://writ.dev/writd" {
					t.Errorf("brokerID = %v, want it parsed", cfg.brokerID)
				}
				return
			}
			if err == nil {
				t.Fatalf("loadAgentConfig() = nil, want errors %q", tt.wantErr)
			}
			if got := exitCode(err); got != exitUsage {
				t.Errorf("exitCode(%v) = %d, want %d", err, got, exitUsage)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("loadAgentConfig() error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}
