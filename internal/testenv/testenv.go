// Package testenv decides what an integration test does when a real
// dependency (Vault, etcd, SPIRE, PostgreSQL) is missing.
//
// On a laptop the test is skipped with a message saying how to provide the
// dependency. With WRIT_INTEGRATION=require (set by .ci/run) it fails instead,
// because a skipped integration test in CI hides a missing dependency.
package testenv

import (
	"os"
	"testing"
)

// Required reports whether WRIT_INTEGRATION=require is set.
func Required() bool { return os.Getenv("WRIT_INTEGRATION") == "require" }

// Missing skips t, or fails it under WRIT_INTEGRATION=require, because the
// named dependency is not available. how says how to provide it.
func Missing(t testing.TB, dependency, how string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s is required (WRIT_INTEGRATION=require) but unavailable: %s", dependency, how)
	}
	t.Skipf("%s unavailable (set WRIT_INTEGRATION=require to fail instead): %s", dependency, how)
}
