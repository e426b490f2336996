package depcheck

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/writ-dev/writ"

// compositionRoot builds the daemon for cmd/writd and cmd/writ-bench; like
// cmd/writd it may import every adapter and the broker.
const compositionRoot = "internal/daemon"

// rule forbids a package (and its subpackages) from importing what deny matches.
type rule struct {
	pkg  string
	deny func(imp string) bool
	why  string
}

func stdlibOnly(imp string) bool { return strings.Contains(strings.Split(imp, "/")[0], ".") }

func under(prefixes ...string) func(string) bool {
	return func(imp string) bool {
		for _, p := range prefixes {
			if imp == module+"/"+p || strings.HasPrefix(imp, module+"/"+p+"/") {
				return true
			}
		}
		return false
	}
}

func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	rules := []rule{
		{pkg: "approval", deny: stdlibOnly, why: "the domain imports only the standard library"},
		{pkg: "internal/audit", deny: stdlibOnly, why: "the ledger format imports only the standard library"},
		{pkg: "broker", deny: under("internal/store", "internal/vault", "internal/jwtissuer", "internal/policy", "cmd"), why: "adapters are injected into the broker, never imported"},
		{pkg: "internal", deny: under("broker", "cmd"), why: "adapters do not depend on the gRPC adapter or commands"},
		{pkg: "proto", deny: func(imp string) bool {
			return strings.HasPrefix(imp, module+"/") && !strings.HasPrefix(imp, module+"/proto/")
		}, why: "generated code depends only on runtimes"},
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	checked := 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg, imports := strings.TrimPrefix(fields[0], module+"/"), fields[1:]
		for _, imp := range imports {
			if strings.HasSuffix(imp, "test") && strings.HasPrefix(imp, module+"/") && !strings.HasSuffix(pkg, "test") {
				t.Errorf("%s imports test helper %s: *test packages are for tests only", pkg, imp)
			}
			for _, r := range rules {
				if pkg == compositionRoot && r.pkg == "internal" {
					continue // the daemon's wiring, shared by cmd/writd and cmd/writ-bench
				}
				if (pkg == r.pkg || strings.HasPrefix(pkg, r.pkg+"/")) && r.deny(imp) {
					t.Errorf("%s imports %s: %s", pkg, imp, r.why)
				}
			}
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages; is go list working?", checked)
	}
}
