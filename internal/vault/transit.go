package vault

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/api"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/jwtissuer"
)

// DefaultTransitMount is where the transit secrets engine is mounted when
// TransitJWTConfig.Mount is empty.
const DefaultTransitMount = "transit"

// DenyList durably records revoked JWT IDs until they expire, for relying
// parties to refuse them.
type DenyList interface {
	DenyJTI(ctx context.Context, jti string, exp time.Time) error
}

// TransitJWTConfig configures a TransitJWTIssuer.
type TransitJWTConfig struct {
	// Client is the Vault client to sign with. Required.
	Client *Client
	// Issuer is the "iss" claim of every token. Required.
	Issuer string
	// Keys are the transit keys the issuer may sign with (a recipe naming
	// another key is refused) and whose public keys JWKS publishes. Each
	// must be an ecdsa-p256 (ES256) or ed25519 (EdDSA) key. Required.
	Keys []string
	// Mount is the transit engine's mount path. Defaults to
	// DefaultTransitMount.
	Mount string
	// DenyList, if set, receives the jti of every revoked JWT. Without it
	// Revoke fails with ErrNoDenyList.
	DenyList DenyList
}

// TransitJWTIssuer mints JWTs (recipe kind approval.KindVaultTransitJWT)
// signed by a Vault transit key: the private key never leaves Vault. It is
// safe for concurrent use.
type TransitJWTIssuer struct {
	c     *Client
	iss   string
	keys  []string
	mount string
	deny  DenyList
	now   func() time.Time
	log   *slog.Logger
}

// NewTransitJWTIssuer returns a TransitJWTIssuer for cfg. It does not
// contact Vault.
func NewTransitJWTIssuer(cfg TransitJWTConfig) (*TransitJWTIssuer, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("vault: transit jwt issuer: Client is required")
	case cfg.Issuer == "":
		return nil, errors.New("vault: transit jwt issuer: Issuer (the iss claim) is required")
	case len(cfg.Keys) == 0:
		return nil, errors.New("vault: transit jwt issuer: at least one transit key is required")
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultTransitMount
	}
	if err := checkPath(cfg.Mount); err != nil {
		return nil, fmt.Errorf("vault: transit jwt issuer: mount: %w", err)
	}
	keys := slices.Clone(cfg.Keys)
	for _, k := range keys {
		if err := checkName("transit key", k); err != nil {
			return nil, fmt.Errorf("vault: transit jwt issuer: %w", err)
		}
	}
	slices.Sort(keys)
	return &TransitJWTIssuer{
		c:     cfg.Client,
		iss:   cfg.Issuer,
		keys:  slices.Compact(keys),
		mount: cfg.Mount,
		deny:  cfg.DenyList,
		now:   cfg.Client.now,
		log:   cfg.Client.log,
	}, nil
}

// Issue signs a JWT for g with the transit key g.Recipe.TransitKey.
//
// The claims are those of internal/jwtissuer: iss, sub (the principal), aud
// (g.Recipe.Audience), iat and nbf (g.IssuedAt, or now if zero), exp
// (g.Expires), jti (g.ID) and ent (the entitlement), times truncated to
// whole seconds so the token never outlives the grant. The header's alg is
// ES256 for an ecdsa-p256 key and EdDSA for an ed25519 key, and its kid is
// "<key>:v<version>", the key version Vault signed with (the latest), as
// published by JWKS. Issue checks the signature against that version's
// public key before returning the token.
//
// Issue returns an error wrapping approval.ErrInvalid if g is not a
// vault_transit_jwt grant, names a key not in Config.Keys, has no audience,
// ID, principal or future expiry, or if the key's type cannot sign JWTs;
// and ErrNotFound, ErrDenied or ErrUnavailable when Vault refuses or fails.
func (t *TransitJWTIssuer) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	now := t.now()
	if err := t.check(g, now); err != nil {
		return approval.Credential{}, fmt.Errorf("issue transit jwt for grant %s: %w", g.ID, err)
	}
	c, err := jwtissuer.NewClaims(t.iss, g, now)
	if err != nil {
		return approval.Credential{}, fmt.Errorf("issue transit jwt for grant %s: %w", g.ID, err)
	}
	exp := c.ExpiresAt
	key := g.Recipe.TransitKey
	info, err := t.readKey(ctx, key)
	if err != nil {
		return approval.Credential{}, fmt.Errorf("issue transit jwt for grant %s: %w", g.ID, err)
	}
	latest, ok := info.versions[info.latest]
	if !ok {
		return approval.Credential{}, fmt.Errorf("issue transit jwt for grant %s: transit key %q lists no public key for its latest version %d", g.ID, key, info.latest)
	}
	method := &transitMethod{t: t, ctx: ctx, key: key, version: info.latest, alg: info.alg, pub: latest}
	tok := jwt.NewWithClaims(method, c)
	kid := keyID(key, info.latest)
	tok.Header["kid"] = kid
	signed, err := tok.SignedString(nil)
	if err != nil {
		return approval.Credential{}, fmt.Errorf("issue transit jwt for grant %s: %w", g.ID, err)
	}
	t.log.InfoContext(ctx, "transit jwt issued", "grant_id", g.ID, "kid", kid, "expires", exp.Time)
	return approval.Credential{
		Ref:      approval.CredentialRef{Kind: approval.KindVaultTransitJWT, ID: g.ID, Expires: exp.Time},
		Secret:   approval.Secret(signed),
		IssuedAt: now,
	}, nil
}

// check reports why g cannot be turned into a token at now.
func (t *TransitJWTIssuer) check(g approval.Grant, now time.Time) error {
	switch {
	case g.Recipe.Kind != approval.KindVaultTransitJWT:
		return fmt.Errorf("recipe kind is %q, want %q: %w", g.Recipe.Kind, approval.KindVaultTransitJWT, approval.ErrInvalid)
	case !slices.Contains(t.keys, g.Recipe.TransitKey):
		return fmt.Errorf("transit key %q is not one this issuer signs with (%s): %w", g.Recipe.TransitKey, strings.Join(t.keys, ", "), approval.ErrInvalid)
	case len(g.Recipe.Audience) == 0 || slices.Contains(g.Recipe.Audience, ""):
		return fmt.Errorf("recipe has no audience, or an empty one: %w", approval.ErrInvalid)
	case g.ID == "":
		return fmt.Errorf("grant has no ID: %w", approval.ErrInvalid)
	case g.Principal == "":
		return fmt.Errorf("grant has no principal: %w", approval.ErrInvalid)
	case g.Expires.IsZero():
		return fmt.Errorf("grant has no expiry: %w", approval.ErrInvalid)
	case !now.Before(g.Expires):
		return fmt.Errorf("grant expired at %s: %w", g.Expires.Format(time.RFC3339), approval.ErrInvalid)
	}
	return nil
}

// Revoke adds the JWT's jti (ref.ID) to the deny-list, where it stays until
// ref.Expires. A signed JWT cannot be recalled; relying parties that do not
// check the list accept it until it expires. An already expired token needs
// nothing. Without a DenyList, Revoke returns ErrNoDenyList.
func (t *TransitJWTIssuer) Revoke(ctx context.Context, ref approval.CredentialRef) error {
	if ref.Kind != approval.KindVaultTransitJWT || ref.ID == "" {
		return fmt.Errorf("revoke: %q credential %q is not a transit JWT: %w", ref.Kind, ref.ID, approval.ErrInvalid)
	}
	if !ref.Expires.IsZero() && !ref.Expires.After(t.now()) {
		return nil
	}
	if t.deny == nil {
		return fmt.Errorf("revoke transit jwt %s: %w", ref.ID, ErrNoDenyList)
	}
	if err := t.deny.DenyJTI(ctx, ref.ID, ref.Expires); err != nil {
		return fmt.Errorf("revoke transit jwt %s: %w", ref.ID, err)
	}
	t.log.InfoContext(ctx, "transit jwt denied", "jti", ref.ID, "expires", ref.Expires)
	return nil
}

// keyID is the kid of version v of transit key key.
func keyID(key string, v int) string { return key + ":v" + strconv.Itoa(v) }

// transitMethod is a jwt.SigningMethod that signs one token with a transit
// key version through Vault. It carries the request's context because
// jwt.SigningMethod.Sign has none. It is not registered with the jwt
// package and cannot verify.
type transitMethod struct {
	t       *TransitJWTIssuer
	ctx     context.Context
	key     string
	version int
	alg     string
	pub     any // the version's public key, to check Vault's signature
}

// Alg returns the JWS algorithm: ES256 or EdDSA.
func (m *transitMethod) Alg() string { return m.alg }

// Verify always fails: tokens are verified by relying parties against the
// JWKS, not by the issuer.
func (m *transitMethod) Verify(string, []byte, any) error {
	return errors.New("transit signing method cannot verify; use the JWKS")
}

// Sign asks Vault to sign signingString with the method's key version and
// returns the raw JWS signature (R||S for ES256, 64 bytes for EdDSA). The
// key argument is ignored.
func (m *transitMethod) Sign(signingString string, _ any) ([]byte, error) {
	path := m.t.mount + "/sign/" + m.key
	data := map[string]any{
		"key_version":          m.version,
		"marshaling_algorithm": "jws",
	}
	switch m.alg {
	case jwt.SigningMethodES256.Alg():
		sum := sha256.Sum256([]byte(signingString))
		path += "/sha2-256"
		data["input"] = base64.StdEncoding.EncodeToString(sum[:])
		data["prehashed"] = true
	default:
		data["input"] = base64.StdEncoding.EncodeToString([]byte(signingString))
	}
	var secret *api.Secret
	// Signing changes nothing in Vault, so a lost answer may be retried.
	err := m.t.c.do(m.ctx, op{name: "sign jwt", path: path, capability: "update", idempotent: true}, func(ctx context.Context) error {
		var err error
		secret, err = m.t.c.api.Logical().WriteWithContext(ctx, path, data)
		return err
	})
	if err != nil {
		return nil, err
	}
	if secret == nil || secret.Data == nil {
		return nil, fmt.Errorf("sign jwt: %q: vault returned no signature", path)
	}
	sigField, _ := secret.Data["signature"].(string)
	prefix := "vault:v" + strconv.Itoa(m.version) + ":"
	if !strings.HasPrefix(sigField, prefix) {
		return nil, fmt.Errorf("sign jwt: %q: signature is not from key version %d", path, m.version)
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(sigField, prefix))
	if err != nil {
		return nil, fmt.Errorf("sign jwt: %q: signature is not base64url: %w", path, err)
	}
	if err := verifySignature(m.alg, m.pub, signingString, sig); err != nil {
		return nil, fmt.Errorf("sign jwt: %q: vault's signature does not verify against version %d's public key: %w", path, m.version, err)
	}
	return sig, nil
}
