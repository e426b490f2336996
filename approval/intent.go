package approval

import "time"

// Intent is the durable note a broker writes before it asks an external
// system (Vault) to mint a credential, and clears once the grant's outcome
// is in the ledger. An intent found without a ledger record for its grant
// belongs to a broker that crashed (or gave up waiting) between minting and
// recording: a reconciler finds the credential it may have minted and
// revokes it (reliability cases T1 and T8).
//
// Credentials that need no intent are bounded by their own expiry and
// leave nothing to revoke at an external system: locally signed JWTs and
// transit-signed JWTs (a signature is not a stored credential).
type Intent struct {
	// GrantID is the grant the credential is minted for. Vault tokens carry
	// it in their metadata ("grant_id").
	GrantID string
	// Recipe says what is minted and where (token role or secret path).
	Recipe Recipe
	// Principal and Entitlement are the grant's, for the ledger.
	Principal   Principal
	Entitlement string
	// RequestID is the approval the grant is minted under, if any.
	RequestID string
	// CreatedAt is when the broker wrote the intent, just before it asked
	// the external system.
	CreatedAt time.Time
	// NotAfter is the latest any credential minted for the grant can live:
	// the grant's Expires. Past it, nothing minted under the intent can
	// still work, so the intent may be cleared even if the credential was
	// never found.
	NotAfter time.Time
}
