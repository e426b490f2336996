package spiffe

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// jwtAlgorithms are the values of "alg" JWT-SVID §2.1 allows.
var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}

// jwtHeaders are the only headers JWT-SVID §2 allows.
var jwtHeaders = []string{"alg", "kid", "typ"}

// checkJWTSVID checks the rules of the JWT-SVID specification that do not
// need the signature, on the token's own bytes, and returns the subject's
// SPIFFE ID. The signature, "exp" against the wall clock and "aud" are
// checked again by go-spiffe afterwards; nothing here accepts a token.
func checkJWTSVID(token, audience string, now time.Time) (spiffeid.ID, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || strings.HasPrefix(strings.TrimSpace(token), "{") {
		return spiffeid.ID{}, broke(RuleJWTCompact, "%d dot-separated parts", len(parts))
	}
	var header map[string]json.RawMessage
	if err := decodeSegment(parts[0], &header); err != nil {
		return spiffeid.ID{}, broke(RuleJWTCompact, "header: %v", err)
	}
	for name := range header {
		if !slices.Contains(jwtHeaders, name) {
			return spiffeid.ID{}, broke(RuleJWTHeader, "header %q", name)
		}
	}
	var alg string
	if err := json.Unmarshal(header["alg"], &alg); err != nil || !slices.Contains(jwtAlgorithms, alg) {
		return spiffeid.ID{}, broke(RuleJWTAlg, "alg %q", string(header["alg"]))
	}
	if raw, ok := header["typ"]; ok {
		var typ string
		if err := json.Unmarshal(raw, &typ); err != nil || typ != "JWT" && typ != "JOSE" {
			return spiffeid.ID{}, broke(RuleJWTTyp, "typ %q", string(raw))
		}
	}

	var claims struct {
		Sub json.RawMessage `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp json.RawMessage `json:"exp"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return spiffeid.ID{}, broke(RuleJWTCompact, "claims: %v", err)
	}
	var sub string
	if err := json.Unmarshal(claims.Sub, &sub); err != nil || sub == "" {
		return spiffeid.ID{}, broke(RuleJWTSubject, "no sub, or not a string")
	}
	id, err := ParseWorkloadID(sub, RuleJWTSubject)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: %w", RuleJWTSubject, err)
	}
	aud, err := audiences(claims.Aud)
	switch {
	case err != nil:
		return spiffeid.ID{}, broke(RuleJWTAudience, "%v", err)
	case len(aud) == 0:
		return spiffeid.ID{}, broke(RuleJWTAudience, "no aud")
	case !slices.Contains(aud, audience):
		return spiffeid.ID{}, broke(RuleJWTAudience, "aud %q does not hold %q", aud, audience)
	}
	var exp float64
	if err := json.Unmarshal(claims.Exp, &exp); err != nil || string(claims.Exp) == "null" {
		return spiffeid.ID{}, broke(RuleJWTExpiry, "no exp, or not a number")
	}
	if float64(now.Add(-JWTLeeway).Unix()) >= exp {
		return spiffeid.ID{}, broke(RuleJWTExpiry, "expired at %s", time.Unix(int64(exp), 0).UTC().Format(time.RFC3339))
	}
	return id, nil
}

// decodeSegment decodes one base64url segment of a compact JWS as a JSON
// object into v.
func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return fmt.Errorf("not base64url")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a JSON object")
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// audiences reads "aud": one string or a list of strings (RFC 7519 §4.1.3).
func audiences(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("aud is neither a string nor a list of strings")
	}
	return slices.DeleteFunc(list, func(s string) bool { return s == "" }), nil
}
