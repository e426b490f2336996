// Package approval is Writ's domain: entitlements, eligibility, the decision
// whether a principal may hold a credential, and the grant handed to an issuer.
//
// It imports only the standard library. It knows nothing about gRPC, SPIFFE
// libraries, stores, Vault or the ledger: the broker records what happened.
// Every function that depends on time takes it as an argument.
package approval
