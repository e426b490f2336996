package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
)

// agentConfig is the agent's configuration file (agent.yaml). Unknown keys
// are errors.
type agentConfig struct {
	// Broker is the broker's gRPC address, host:port.
	Broker string `yaml:"broker"`
	// BrokerID is the SPIFFE ID the broker must present.
	BrokerID string `yaml:"broker_id"`
	// SVID says where the workload's X.509-SVID comes from. Empty means the
	// Workload API at SPIFFE_ENDPOINT_SOCKET.
	SVID agentSVIDConfig `yaml:"svid"`
	// MetricsListen, if set, serves Prometheus metrics at /metrics.
	MetricsListen string `yaml:"metrics_listen"`
	// Credentials are the files to keep current, one per entitlement.
	Credentials []agentCredential `yaml:"credentials"`

	brokerID spiffeid.ID // parsed BrokerID
}

// agentSVIDConfig selects a Workload API socket or a directory holding
// svid.pem, svid_key.pem and bundle.pem (as `writd dev` writes).
type agentSVIDConfig struct {
	Socket string `yaml:"socket"`
	Dir    string `yaml:"dir"`
}

// agentCredential is one credential the agent keeps written to a file.
type agentCredential struct {
	// Entitlement to ask for; unique within the file.
	Entitlement string `yaml:"entitlement"`
	// Path of the file, written atomically with mode 0600. Its directory
	// must exist.
	Path string `yaml:"path"`
	// Template renders the file from agentTemplateData; default
	// "{{ .Secret }}".
	Template string `yaml:"template"`
	// Command, if set, runs after each write (argv, no shell).
	Command []string `yaml:"command"`
	// RenewFraction is the fraction of the lifetime after which the
	// credential is renewed, in (0, 1); zero means client.DefaultRenewFraction.
	RenewFraction float64 `yaml:"renew_fraction"`

	tmpl *template.Template
}

// agentTemplateData is what a credential template sees: the fields of
// client.Credential, with Secret and Data as plain strings rather than the
// self-redacting client.Secret.
type agentTemplateData struct {
	GrantID, Entitlement, Kind, Secret, Reference string
	Data                                          map[string]string
	IssuedAt, ExpiresAt                           time.Time
	BreakGlass                                    bool
}

const defaultAgentTemplate = "{{ .Secret }}"

// loadAgentConfig reads path strictly and validates it. Every problem is
// reported at once, each with its line in path.
func loadAgentConfig(path string) (agentConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return agentConfig{}, agentConfigError{fmt.Errorf("read agent config: %w", err)}
	}
	var cfg agentConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return agentConfig{}, agentConfigError{fmt.Errorf("%s: %w", path, err)}
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // decoded above; only line numbers are read
	lines := nodeLines(&root)
	if err := cfg.validate(func(field string) string {
		if l := lines.find(field); l > 0 {
			return path + ":" + strconv.Itoa(l)
		}
		return path
	}); err != nil {
		return agentConfig{}, agentConfigError{err}
	}
	return cfg, nil
}

// agentConfigError is a problem with the agent's configuration file. It
// exits as a usage error, without appending "usage" to every message.
type agentConfigError struct{ err error }

func (e agentConfigError) Error() string   { return e.err.Error() }
func (e agentConfigError) Unwrap() []error { return []error{e.err, errUsage} }

// validate checks cfg and parses its templates. where names the file and
// line of a field.
func (c *agentConfig) validate(where func(field string) string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: "+format, append([]any{where(field), field}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.Broker); err != nil {
		bad("broker", "%q is not host:port", c.Broker)
	}
	if id, err := spiffeid.FromString(c.BrokerID); err != nil {
		bad("broker_id", "%q is not a SPIFFE ID (e.g. spiffe://example.org/writd): %v", c.BrokerID, err)
	} else {
		c.brokerID = id
	}
	switch s := c.SVID; {
	case s.Socket != "" && s.Dir != "":
		bad("svid", "set socket or dir, not both")
	case s.Socket != "":
		if u, err := url.Parse(s.Socket); err != nil || (u.Scheme != "unix" && u.Scheme != "tcp") {
			bad("svid.socket", "%q must be a unix:///path or tcp://host:port address", s.Socket)
		}
	case s.Dir != "":
		for _, name := range []string{"svid.pem", "svid_key.pem", "bundle.pem"} {
			if _, err := os.Stat(filepath.Join(s.Dir, name)); err != nil {
				bad("svid.dir", "%v", err)
			}
		}
	case os.Getenv("SPIFFE_ENDPOINT_SOCKET") == "":
		bad("svid", "set socket (a SPIFFE Workload API address) or dir, or SPIFFE_ENDPOINT_SOCKET")
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("metrics_listen", "%q is not host:port", c.MetricsListen)
		}
	}
	if len(c.Credentials) == 0 {
		bad("credentials", "at least one is required")
	}
	entitlements, paths := map[string]bool{}, map[string]bool{}
	for i := range c.Credentials {
		cr := &c.Credentials[i]
		field := func(name string) string { return fmt.Sprintf("credentials[%d].%s", i, name) }
		switch {
		case cr.Entitlement == "":
			bad(field("entitlement"), "is required")
		case entitlements[cr.Entitlement]:
			bad(field("entitlement"), "%q appears twice; each entitlement is written to one file", cr.Entitlement)
		}
		entitlements[cr.Entitlement] = true
		if cr.Path == "" {
			bad(field("path"), "is required")
		} else {
			abs, _ := filepath.Abs(cr.Path)
			if paths[abs] {
				bad(field("path"), "%q appears twice", cr.Path)
			}
			paths[abs] = true
			if fi, err := os.Stat(filepath.Dir(abs)); err != nil || !fi.IsDir() {
				bad(field("path"), "directory %s does not exist", filepath.Dir(abs))
			}
		}
		if cr.Template == "" {
			cr.Template = defaultAgentTemplate
		}
		// A missing .Data key fails the write rather than writing "<no value>".
		tmpl, err := template.New(field("template")).Option("missingkey=error").Parse(cr.Template)
		if err == nil {
			// Field names are checked only when a template runs: run a copy
			// now, on empty data (which has no .Data keys yet).
			var check *template.Template
			if check, err = tmpl.Clone(); err == nil {
				err = check.Option("missingkey=zero").Execute(io.Discard, agentTemplateData{})
			}
		}
		if err != nil {
			bad(field("template"), "%v (fields: .GrantID .Entitlement .Kind .Secret .Data .Reference .IssuedAt .ExpiresAt .BreakGlass)", err)
		}
		cr.tmpl = tmpl
		if len(cr.Command) > 0 && cr.Command[0] == "" {
			bad(field("command"), "the program name (first element) is empty")
		}
		if cr.RenewFraction < 0 || cr.RenewFraction >= 1 {
			bad(field("renew_fraction"), "%v is not in (0, 1)", cr.RenewFraction)
		}
	}
	return errors.Join(errs...)
}

// yamlLines maps field paths ("credentials[0].path") to their lines.
type yamlLines map[string]int

// find returns the line of field, or of its nearest enclosing field that is
// present, or 0.
func (l yamlLines) find(field string) int {
	for field != "" {
		if n, ok := l[field]; ok {
			return n
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return 0
}

func nodeLines(root *yaml.Node) yamlLines {
	lines := yamlLines{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				lines[p] = n.Content[i].Line
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				lines[p] = c.Line
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return lines
}
