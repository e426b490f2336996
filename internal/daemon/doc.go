// Package daemon is Writ's composition root: the only place adapters meet.
// It reads nothing from the environment; cmd/writd (serve and dev) and
// cmd/writ-bench build the same daemon with New, so the benchmark measures
// what ships.
//
// New starts the components in order (store, SVID source, issuers,
// approvals, revoker, notifier, HTTP listener, OIDC verifier, broker, gRPC
// listeners, background jobs); Shutdown stops them in reverse.
package daemon
