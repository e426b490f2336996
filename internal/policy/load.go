package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/writ-dev/writ/approval"
)

// MaxFileSize is the largest policy file Load and Parse accept (1 MiB).
const MaxFileSize = 1 << 20

// Version is the only policy file format version this package reads.
const Version = 1

var trustDomainRE = regexp.MustCompile(`^[a-z0-9._-]{1,255}$`)

// Load reads the policy file at path and parses it with Parse. The returned
// policy's Source is path.
//
// A file that cannot be read yields the operating system's error, wrapped; a
// file larger than MaxFileSize or one that does not satisfy the format
// yields one *Error per problem (see Parse).
func Load(path string) (*approval.Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a policy file's contents strictly; name is used in messages
// and as the policy's Source.
//
// Unknown keys, duplicate keys, values of the wrong type, missing required
// fields, invalid values and conditions that do not compile are all errors.
// Parse reports every problem it finds, each as an *Error whose message
// reads "name:line: field.path: what is wrong", joined with errors.Join and
// sorted by line; past 50 problems a final note says how many more there
// are. Each *Error wraps approval.ErrInvalid, or
// approval.ErrUnsupported for a feature that this version recognises but
// does not implement (none at present).
func Parse(name string, data []byte) (*approval.Policy, error) {
	d := &decoder{file: name}
	p := d.parse(data)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.sorted()...)
	}
	p.Source = name
	p.Text = bytes.Clone(data)
	sum := sha256.Sum256(data)
	p.Hash = hex.EncodeToString(sum[:])
	return p, nil
}

// parse decodes data, recording problems in d. The result is meaningful only
// if none were recorded.
func (d *decoder) parse(data []byte) *approval.Policy {
	if len(data) > MaxFileSize {
		d.errorf(nil, "", "policy file is larger than 1 MiB; split it or remove unused entitlements")
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(nil, "", "policy file is empty; it needs version, trust_domain and entitlements")
		} else {
			d.yamlError(err)
		}
		return nil
	}
	// A trailing "---" with nothing after it is harmless; a second document
	// with content would be silently ignored, so it is an error.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.yamlError(err)
			return nil
		}
		if !isEmptyDocument(&next) {
			d.errorf(&next, "", "policy file holds more than one YAML document; remove the \"---\" separator")
			return nil
		}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			d.errorf(nil, "", "policy file is empty; it needs version, trust_domain and entitlements")
			return nil
		}
		root = root.Content[0]
	}
	return d.policy(root)
}

// isEmptyDocument reports whether n is a document with no content.
func isEmptyDocument(n *yaml.Node) bool {
	if n.Kind != yaml.DocumentNode {
		return false
	}
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode || c.ShortTag() != "!!null" || c.Value != "" {
			return false
		}
	}
	return true
}

// yamlErrLine matches the "yaml: line N: " prefix of yaml.v3 syntax errors.
var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError records a YAML syntax error, moving its line number into the
// usual position.
func (d *decoder) yamlError(err error) {
	msg := err.Error()
	line := 0
	if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Msg: "invalid YAML: " + msg, Err: approval.ErrInvalid})
}

// policy decodes the top-level mapping.
func (d *decoder) policy(n *yaml.Node) *approval.Policy {
	fields, ok := d.mapping(n, "", []string{"version", "trust_domain", "entitlements"}, []string{"version", "trust_domain", "entitlements"})
	if !ok {
		return nil
	}
	p := &approval.Policy{Entitlements: map[string]*approval.Entitlement{}}
	if f, ok := fields["version"]; ok {
		if v, ok := d.scalar(f.val, "version", "!!int", "the number 1"); ok {
			if v != strconv.Itoa(Version) {
				d.errorf(f.val, "version", "%s is not supported by this version of writd (supported: %d)", v, Version)
			}
		}
	}
	tdOK := false
	if f, ok := fields["trust_domain"]; ok {
		p.TrustDomain, tdOK = d.trustDomain(f.val)
	}
	if f, ok := fields["entitlements"]; ok {
		items, _ := d.list(f.val, "entitlements", "at least one entitlement is required")
		firstLine := map[string]int{}
		for i, item := range items {
			path := index("entitlements", i)
			e, nameNode := d.entitlement(item, path, p.TrustDomain, tdOK)
			if e == nil {
				continue
			}
			if line, dup := firstLine[e.Name]; dup {
				d.errorf(nameNode, join(path, "name"), "%q is already defined on line %d; entitlement names must be unique", e.Name, line)
				continue
			}
			firstLine[e.Name] = nameNode.Line
			p.Entitlements[e.Name] = e
		}
	}
	return p
}

// trustDomain decodes the policy's trust domain.
func (d *decoder) trustDomain(n *yaml.Node) (string, bool) {
	td, ok := d.str(n, "trust_domain")
	if !ok {
		return "", false
	}
	if strings.Contains(td, "://") {
		d.errorf(n, "trust_domain", "%q is a URI; write the bare trust domain, such as writ.dev", td)
		return "", false
	}
	if !trustDomainRE.MatchString(td) {
		d.errorf(n, "trust_domain", "%q is not a valid trust domain (lowercase letters, digits, '.', '-' and '_' only)", td)
		return "", false
	}
	return td, true
}
