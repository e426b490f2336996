package jwtissuer

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/writ-dev/writ/approval"
)

// Signing algorithms accepted in Config.Algorithm.
const (
	// AlgEdDSA signs with Ed25519 (RFC 8037). It is the default.
	AlgEdDSA = "EdDSA"
	// AlgES256 signs with ECDSA on P-256 and SHA-256 (RFC 7518).
	AlgES256 = "ES256"
)

// Config configures an Issuer.
type Config struct {
	// KeyFile is the path of the PKCS#8 PEM signing key, in the broker's data
	// directory. New creates it (mode 0600) if it does not exist. Required.
	KeyFile string
	// Algorithm is AlgEdDSA (the default when empty) or AlgES256.
	Algorithm string
	// Issuer is the "iss" claim of every token, e.g. the broker's HTTPS URL.
	// Required.
	Issuer string
	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time
	// Logger receives key lifecycle and issuance events. Defaults to
	// discarding them.
	Logger *slog.Logger
	// DenyList, if set, receives the jti of every revoked JWT so relying
	// parties can refuse it before it expires. Without it Revoke fails.
	DenyList DenyList
}

// DenyList durably records revoked JWT IDs until they expire.
type DenyList interface {
	DenyJTI(ctx context.Context, jti string, exp time.Time) error
}

// Issuer mints JWTs for grants. It is safe for concurrent use.
type Issuer struct {
	method jwt.SigningMethod
	key    crypto.Signer
	kid    string
	iss    string
	jwks   []byte
	now    func() time.Time
	log    *slog.Logger
	deny   DenyList
}

// New returns an Issuer signing with the key in cfg.KeyFile, generating and
// writing the key first if the file does not exist. The directory of KeyFile
// must exist.
//
// New returns ErrInsecureKeyFile if an existing key file can be read by group
// or others, and ErrKeyMismatch if it holds a key for another algorithm.
func New(cfg Config) (*Issuer, error) {
	if cfg.KeyFile == "" {
		return nil, errors.New("jwtissuer: KeyFile is required")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("jwtissuer: Issuer (the iss claim) is required")
	}
	if cfg.Algorithm == "" {
		cfg.Algorithm = AlgEdDSA
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var method jwt.SigningMethod
	switch cfg.Algorithm {
	case AlgEdDSA:
		method = jwt.SigningMethodEdDSA
	case AlgES256:
		method = jwt.SigningMethodES256
	default:
		return nil, fmt.Errorf("jwtissuer: algorithm %q is not supported, use %q or %q", cfg.Algorithm, AlgEdDSA, AlgES256)
	}
	key, created, err := loadOrCreateKey(cfg.KeyFile, cfg.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("jwtissuer: %w", err)
	}
	pub, err := publicJWK(key, cfg.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("jwtissuer: %w", err)
	}
	set, err := marshalJWKS(pub)
	if err != nil {
		return nil, fmt.Errorf("jwtissuer: %w", err)
	}
	if created {
		cfg.Logger.Info("jwt signing key created", "key_file", cfg.KeyFile, "kid", pub.Kid, "alg", cfg.Algorithm)
	} else {
		cfg.Logger.Debug("jwt signing key loaded", "key_file", cfg.KeyFile, "kid", pub.Kid, "alg", cfg.Algorithm)
	}
	return &Issuer{
		method: method,
		key:    key,
		kid:    pub.Kid,
		iss:    cfg.Issuer,
		jwks:   set,
		now:    cfg.Now,
		log:    cfg.Logger,
		deny:   cfg.DenyList,
	}, nil
}

// KeyID returns the "kid" of the signing key: its RFC 7638 thumbprint.
func (i *Issuer) KeyID() string { return i.kid }

// Issue signs a JWT for g, which must have recipe kind approval.KindJWT, a
// non-empty audience, an ID, a principal and an expiry in the future.
//
// The token's iat and nbf are g.IssuedAt (the current time if zero) and its
// exp is g.Expires, both truncated to whole seconds, so the token never
// outlives the grant. Issue returns an error wrapping approval.ErrInvalid if
// g does not meet these conditions, including when truncation leaves exp at
// or before iat (a grant shorter than a second).
func (i *Issuer) Issue(ctx context.Context, g approval.Grant) (approval.Credential, error) {
	if err := ctx.Err(); err != nil {
		return approval.Credential{}, fmt.Errorf("issue jwt for grant %s: %w", g.ID, err)
	}
	now := i.now()
	if err := i.check(g, now); err != nil {
		return approval.Credential{}, fmt.Errorf("issue jwt for grant %s: %w", g.ID, err)
	}
	c, err := NewClaims(i.iss, g, now)
	if err != nil {
		return approval.Credential{}, fmt.Errorf("issue jwt for grant %s: %w", g.ID, err)
	}
	exp := c.ExpiresAt
	tok := jwt.NewWithClaims(i.method, c)
	tok.Header["kid"] = i.kid
	signed, err := tok.SignedString(i.key)
	if err != nil {
		return approval.Credential{}, fmt.Errorf("sign jwt for grant %s: %w", g.ID, err)
	}
	i.log.DebugContext(ctx, "jwt issued", "grant_id", g.ID, "kid", i.kid, "expires", exp.Time)
	return approval.Credential{
		Ref:      approval.CredentialRef{Kind: approval.KindJWT, ID: g.ID, Expires: exp.Time},
		Secret:   approval.Secret(signed),
		IssuedAt: now,
	}, nil
}

// check reports why g cannot be turned into a token at now.
func (i *Issuer) check(g approval.Grant, now time.Time) error {
	switch {
	case g.Recipe.Kind != approval.KindJWT:
		return fmt.Errorf("recipe kind is %q, want %q: %w", g.Recipe.Kind, approval.KindJWT, approval.ErrInvalid)
	case len(g.Recipe.Audience) == 0:
		return fmt.Errorf("recipe has no audience: %w", approval.ErrInvalid)
	case g.ID == "":
		return fmt.Errorf("grant has no ID: %w", approval.ErrInvalid)
	case g.Principal == "":
		return fmt.Errorf("grant has no principal: %w", approval.ErrInvalid)
	case g.Expires.IsZero():
		return fmt.Errorf("grant has no expiry: %w", approval.ErrInvalid)
	case !now.Before(g.Expires):
		return fmt.Errorf("grant expired at %s: %w", g.Expires.Format(time.RFC3339), approval.ErrInvalid)
	}
	for _, a := range g.Recipe.Audience {
		if a == "" {
			return fmt.Errorf("recipe has an empty audience: %w", approval.ErrInvalid)
		}
	}
	return nil
}

// Revoke adds the JWT's jti (ref.ID) to the deny-list relying parties read
// beside the JWKS (see RevokedHandler), where it stays until ref.Expires. A
// JWT cannot be recalled: relying parties that do not check the list accept
// it until it expires, which is why grants are short. An already expired
// token needs nothing. Without a DenyList, Revoke returns ErrNoDenyList.
func (i *Issuer) Revoke(ctx context.Context, ref approval.CredentialRef) error {
	if ref.Kind != approval.KindJWT || ref.ID == "" {
		return fmt.Errorf("revoke: %q credential %q is not a JWT: %w", ref.Kind, ref.ID, approval.ErrInvalid)
	}
	if !ref.Expires.IsZero() && !ref.Expires.After(i.now()) {
		return nil
	}
	if i.deny == nil {
		return fmt.Errorf("revoke jwt %s: %w", ref.ID, ErrNoDenyList)
	}
	if err := i.deny.DenyJTI(ctx, ref.ID, ref.Expires); err != nil {
		return fmt.Errorf("revoke jwt %s: %w", ref.ID, err)
	}
	return nil
}
