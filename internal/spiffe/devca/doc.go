// Package devca is a development certificate authority that mints X509-SVIDs
// for one SPIFFE trust domain.
//
// It exists for `writd dev` and for tests. It is NOT for production: the CA
// key sits unencrypted on disk, there is no revocation, no key rotation and no
// attestation, so anyone who can read the directory can mint any identity in
// the trust domain. Production deployments get their SVIDs from SPIRE (or
// another SPIFFE Workload API implementation) through internal/spiffe.
//
// A CA is an ECDSA P-256 self-signed certificate whose URI SAN is the trust
// domain's ID (spiffe://example.org), persisted as ca.pem and ca_key.pem
// (mode 0600) so that restarts reuse it. Issued leaves follow the X509-SVID
// specification: exactly one SPIFFE ID URI SAN, not a CA, key usage
// digitalSignature only, and extended key usage serverAuth and clientAuth.
package devca
