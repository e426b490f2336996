package policy

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/writ-dev/writ/approval"
)

// decoder walks a YAML node tree and collects every problem it finds, so a
// person fixing a policy sees all of them at once.
type decoder struct {
	file string
	errs []*Error
}

// errorf records a problem at node n (the document when n is nil).
func (d *decoder) errorf(n *yaml.Node, path string, format string, args ...any) {
	d.report(n, path, approval.ErrInvalid, fmt.Sprintf(format, args...))
}

// report records a problem classified by sentinel.
func (d *decoder) report(n *yaml.Node, path string, sentinel error, msg string) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Path: path, Msg: msg, Err: sentinel})
}

// field is one key of a mapping and its value.
type field struct {
	key, val *yaml.Node
}

// mapping checks that n is a mapping whose keys are unique and among allowed,
// reports the required keys that are missing, and returns the fields that
// are present. ok is false if n is not a mapping at all.
func (d *decoder) mapping(n *yaml.Node, path string, allowed, required []string) (fields map[string]field, ok bool) {
	if !d.kind(n, path, yaml.MappingNode, "a mapping") {
		return nil, false
	}
	fields = make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.errorf(k, path, "keys must be plain field names, got %s", describe(k))
			continue
		}
		p := join(path, k.Value)
		if !contains(allowed, k.Value) {
			if s := suggest(k.Value, allowed); s != "" {
				d.errorf(k, p, "unknown field; did you mean %q? (allowed here: %s)", s, strings.Join(allowed, ", "))
			} else {
				d.errorf(k, p, "unknown field (allowed here: %s)", strings.Join(allowed, ", "))
			}
			continue
		}
		if prev, dup := fields[k.Value]; dup {
			d.errorf(k, p, "duplicate key (first set on line %d)", prev.key.Line)
			continue
		}
		fields[k.Value] = field{key: k, val: v}
	}
	for _, r := range required {
		if _, ok := fields[r]; !ok {
			d.errorf(n, path, "missing required field %q", r)
		}
	}
	return fields, true
}

// kind checks that n has the wanted kind; want describes it for the message.
func (d *decoder) kind(n *yaml.Node, path string, k yaml.Kind, want string) bool {
	if n.Kind == yaml.AliasNode {
		d.errorf(n, path, "YAML aliases (*name) are not allowed in a policy file; write the value out")
		return false
	}
	if n.Kind != k {
		d.errorf(n, path, "must be %s, got %s", want, describe(n))
		return false
	}
	return true
}

// scalar checks that n is a scalar with the given resolved tag.
func (d *decoder) scalar(n *yaml.Node, path, tag, want string) (string, bool) {
	if !d.kind(n, path, yaml.ScalarNode, want) {
		return "", false
	}
	if n.ShortTag() != tag {
		d.errorf(n, path, "must be %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

// str returns the non-empty string held by n.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	s, ok := d.scalar(n, path, "!!str", "a string")
	if !ok {
		return "", false
	}
	if strings.TrimSpace(s) == "" {
		d.errorf(n, path, "must not be empty")
		return "", false
	}
	return s, true
}

// list returns the items of the sequence n, reporting an empty one with
// emptyMsg.
func (d *decoder) list(n *yaml.Node, path, emptyMsg string) ([]*yaml.Node, bool) {
	if !d.kind(n, path, yaml.SequenceNode, "a list") {
		return nil, false
	}
	if len(n.Content) == 0 {
		d.errorf(n, path, "%s", emptyMsg)
		return nil, false
	}
	return n.Content, true
}

// maxReported is how many problems are reported; past it a person is better
// served by fixing the first ones and loading again.
const maxReported = 50

// sorted returns the collected problems ordered by line, stable within a
// line, and at most maxReported of them plus a note saying how many more
// there are.
func (d *decoder) sorted() []error {
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
	errs := d.errs
	if len(errs) > maxReported {
		more := len(errs) - maxReported
		errs = append(errs[:maxReported:maxReported], &Error{File: d.file, Msg: fmt.Sprintf("%d more problems not shown; fix the ones above first", more), Err: approval.ErrInvalid})
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return out
}

// describe names what n holds, for "must be X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	case "!!null":
		return "no value"
	case "!!merge":
		return "a merge key (<<)"
	default:
		return fmt.Sprintf("a %s value", n.ShortTag())
	}
}

// join appends a field name to a path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// index appends a list index to a path.
func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the allowed name closest to s, if it is close enough to be
// a likely typo.
func suggest(s string, allowed []string) string {
	if len(s) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, a := range allowed {
		if d := distance(strings.ToLower(s), a); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
