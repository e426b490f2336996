// Package spiffe is Writ's glue to go-spiffe: where X509-SVIDs and trust
// bundles come from, and how they become gRPC and TLS credentials.
//
// A Source is either the SPIFFE Workload API (NewWorkloadSource, normally a
// SPIRE agent socket) or PEM files on disk (NewFileSource, for hosts without
// an agent and for `writd dev` with internal/spiffe/devca). Both rotate: the
// credentials built by ServerCredentials, ClientCredentials and
// ServerTLSConfig ask the source for the current SVID and bundle on every TLS
// handshake, so a rotated SVID is used by the next connection without a
// restart.
//
// ServerCredentials also closes each connection when the client's SVID
// expires, so a workload whose SVID is no longer renewed loses access then.
//
// JWT-SVIDs, for workloads behind TLS-terminating proxies, are checked by a
// JWTVerifier against a JWTBundleSource: the Workload API
// (NewWorkloadJWTBundleSource) or a SPIFFE bundle file
// (NewJWTBundleFileSource, re-read when it changes).
//
// This package is the only importer of go-spiffe's workloadapi. The broker
// uses only PeerID to learn the caller's SPIFFE ID from a verified
// connection.
package spiffe
