package oidc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/writ-dev/writ/internal/textsafe"
)

// Key set fetching. keyfunc also refreshes the set when a token names an
// unknown kid, rate-limited to once every five minutes (its default), so a
// flood of forged kids cannot hammer the provider.
const (
	// jwksRefreshInterval is how often the key set is fetched in the
	// background.
	jwksRefreshInterval = time.Hour
	// jwksFetchTimeout bounds each key set fetch.
	jwksFetchTimeout = 10 * time.Second
	// jwksUnknownKIDWaitMax bounds how long Verify waits for (and performs)
	// an unknown-kid refresh. When the rate limiter would make it wait
	// longer, Verify fails at once.
	jwksUnknownKIDWaitMax = 5 * time.Second
	// maxSubjectLen is the longest "sub" OpenID Connect Core 1.0 allows.
	maxSubjectLen = 255
	// maxClaimLen bounds each group name and the email address.
	maxClaimLen = 255
)

// Verifier verifies ID tokens issued by one OpenID provider. It is safe for
// concurrent use. The caller must Close it to stop the background key set
// refresh.
type Verifier struct {
	issuer      string
	groupsClaim string
	parser      *jwt.Parser
	keys        keyfunc.Keyfunc
	log         *slog.Logger
	cancel      context.CancelFunc
}

// New returns a Verifier for cfg. Unless cfg.JWKSURL is set it reads the
// key set URL from the issuer's discovery document; it then fetches the key
// set once, so a wrong URL or an unreachable provider is reported now rather
// than on the first login. ctx bounds those fetches only; the Verifier keeps
// refreshing keys in the background until Close.
//
// New returns an error wrapping ErrInvalidConfig for an unusable Config and
// ErrDiscovery when discovery or the first key set fetch fails.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new oidc verifier: %w", err)
	}
	jwksURL := cfg.JWKSURL
	if jwksURL == "" {
		if jwksURL, err = discoverJWKSURL(ctx, cfg.HTTPClient, cfg.Issuer); err != nil {
			return nil, fmt.Errorf("new oidc verifier: %w", err)
		}
	}

	// The key set outlives ctx, which may be a startup deadline, but ctx
	// still cancels the first fetch.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	failFirstFetch := false
	log := cfg.Logger
	keys, err := keyfunc.NewDefaultOverrideCtx(life, []string{jwksURL}, keyfunc.Override{
		Client:                    cfg.HTTPClient,
		HTTPTimeout:               jwksFetchTimeout,
		NoErrorReturnFirstHTTPReq: &failFirstFetch,
		RateLimitWaitMax:          jwksUnknownKIDWaitMax,
		RefreshInterval:           jwksRefreshInterval,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				log.WarnContext(ctx, "jwks refresh failed", "jwks_url", u, "error", err)
			}
		},
	})
	if !stop() {
		cancel()
		return nil, fmt.Errorf("new oidc verifier: fetch jwks %s: %w", jwksURL, context.Cause(ctx))
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("new oidc verifier: fetch jwks %s: %w: %w", jwksURL, err, ErrDiscovery)
	}

	parser := jwt.NewParser(
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithStrictDecoding(),
	)
	return &Verifier{
		issuer:      cfg.Issuer,
		groupsClaim: cfg.GroupsClaim,
		parser:      parser,
		keys:        keys,
		log:         cfg.Logger,
		cancel:      cancel,
	}, nil
}

// Close stops the background key set refresh. It always returns nil.
func (v *Verifier) Close() error {
	v.cancel()
	return nil
}

// Verify checks raw, a compact-serialized ID token, and returns the person it
// authenticates. A token is accepted only if it is at most MaxTokenSize bytes,
// is signed with an allowed algorithm by a key in the provider's key set,
// names the configured issuer and audience, has not expired (exp is
// required), was not issued in the future, has a non-empty "sub", and carries
// a groups claim that is absent or a list of strings. The subject, every
// group and the email must be valid UTF-8 without control or format
// characters (textsafe.Identifier, T43): an identifier that could steer an
// approver's terminal or hide characters is refused, never stored. An unknown kid may
// trigger a rate-limited key set refresh, bounded by ctx.
//
// Every error Verify returns wraps ErrUnauthenticated; its message is a
// short reason safe to show to the caller.
func (v *Verifier) Verify(ctx context.Context, raw string) (Person, error) {
	switch {
	case raw == "":
		return Person{}, v.reject(ctx, "missing token", errEmptyToken)
	case len(raw) > MaxTokenSize:
		return Person{}, v.reject(ctx, "token too large", errTokenTooLarge)
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(raw, claims, v.keys.KeyfuncCtx(ctx)); err != nil {
		return Person{}, v.reject(ctx, reasonFor(err), err)
	}

	sub, err := claims.GetSubject()
	switch {
	case err != nil, len(sub) > maxSubjectLen:
		return Person{}, v.reject(ctx, "invalid subject", errBadSubject)
	case sub == "":
		return Person{}, v.reject(ctx, "missing subject", errMissingSubject)
	case textsafe.Identifier(sub) != nil:
		return Person{}, v.reject(ctx, "subject contains control or format characters", fmt.Errorf("%w: %w", errBadSubject, textsafe.Identifier(sub)))
	}
	groups, err := stringList(claims, v.groupsClaim)
	if err != nil {
		return Person{}, v.reject(ctx, "invalid groups claim", err)
	}
	var email string
	if e, ok := claims["email"]; ok && e != nil {
		if email, ok = e.(string); !ok {
			return Person{}, v.reject(ctx, "invalid email claim", errBadEmail)
		}
		if err := textsafe.Identifier(email); err != nil || len(email) > maxClaimLen {
			return Person{}, v.reject(ctx, "email claim contains control or format characters or is too long", errBadEmail)
		}
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil { // unreachable: the parser requires a valid exp
		return Person{}, v.reject(ctx, "invalid token", err)
	}
	return Person{
		Issuer:  v.issuer,
		Subject: sub,
		Email:   email,
		Groups:  groups,
		Expires: exp.Time,
	}, nil
}

// stringList returns claims[name] as a list of strings. An absent or null
// claim is no groups; anything but a JSON list of strings is an error.
func stringList(claims jwt.MapClaims, name string) ([]string, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errBadGroups
	}
	out := make([]string, 0, len(list))
	for _, item := range list {
		s, ok := item.(string)
		if !ok || len(s) > maxClaimLen || textsafe.Identifier(s) != nil {
			return nil, errBadGroups
		}
		out = append(out, s)
	}
	return out, nil
}

// reject logs cause at debug level and returns an error whose message is
// only reason but which matches both ErrUnauthenticated and cause.
func (v *Verifier) reject(ctx context.Context, reason string, cause error) error {
	v.log.DebugContext(ctx, "id token rejected", "reason", reason, "error", cause)
	return &authError{reason: reason, cause: cause}
}

// reasonFor names the first failure jwt reports, in the order a caller can
// act on it. The jwt error text itself never leaves the package.
func reasonFor(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unknown signing key"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "invalid signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token not yet valid"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing required claim"
	default:
		return "invalid token"
	}
}

// authError is a rejection: its message is a short reason, and it matches
// ErrUnauthenticated and the detailed cause with errors.Is.
type authError struct {
	reason string
	cause  error
}

func (e *authError) Error() string {
	return "verify id token: " + e.reason + ": " + ErrUnauthenticated.Error()
}

func (e *authError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrUnauthenticated}
	}
	return []error{ErrUnauthenticated, e.cause}
}
