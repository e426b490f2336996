package audit

import "time"

// Event is what the broker records about one decision or action. It never
// holds a secret: CredentialRef names a credential (a JWT ID, a Vault token
// accessor, a lease ID), it is not the credential.
type Event struct {
	// Action is what happened, for example "grant", "deny", "revoke" or
	// "grant_failed". Log.Append rejects an empty Action.
	Action string
	// Actor is the principal who acted: a SPIFFE ID, or "oidc:<iss>#<sub>" for
	// a human.
	Actor string
	// Subject is the principal who benefits (the credential's holder).
	Subject string
	// Entitlement is the name of the entitlement requested.
	Entitlement string
	// Rule names the policy rule that decided.
	Rule string
	// Outcome is the result, for example "allowed" or "denied".
	Outcome string
	// Reason explains the outcome in words.
	Reason string
	// GrantID identifies the grant, if one was made.
	GrantID string
	// TTL is the lifetime granted; zero if none.
	TTL time.Duration
	// CredentialKind is the kind of credential issued, for example "jwt".
	CredentialKind string
	// CredentialRef identifies the credential without revealing it: a JWT ID,
	// a Vault token accessor or a lease ID. Never a secret.
	CredentialRef string
	// Expires is when the credential expires; the zero Time if it does not.
	Expires time.Time
	// Details holds optional extra facts. An empty map is recorded as nil.
	Details map[string]string
}
