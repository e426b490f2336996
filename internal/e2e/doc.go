// Package e2e holds end-to-end tests that run the built writd and writ
// binaries, and workloads using the broker/client library, against real
// dependencies started by the tests themselves: a SPIRE server and agent
// (internal/spiretest) attesting workloads by unix uid.
//
// The tests build the binaries with `go build`, run the broker as
// `writd serve --config` with its SVID from the agent's Workload API, and run
// each workload as a separate process under its own uid (the test binary
// itself, re-executed in a helper mode, or the writ CLI), so attestation is
// real. Running workloads under other uids needs root (CI runs as root);
// without it, or without SPIRE, the tests are skipped, or failed under
// WRIT_INTEGRATION=require.
//
// The package has only tests.
package e2e
