package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// DiscoveryPath is where a provider serves its discovery document, relative
// to its issuer URL (OpenID Connect Discovery 1.0, section 4).
const DiscoveryPath = "/.well-known/openid-configuration"

// maxDiscoverySize bounds the discovery document New reads.
const maxDiscoverySize = 1 << 20

// discoveryDoc holds the members of a discovery document Writ uses.
type discoveryDoc struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// discoverJWKSURL fetches issuer's discovery document and returns its
// jwks_uri. The document must name issuer exactly (Discovery 1.0, 4.3).
func discoverJWKSURL(ctx context.Context, client *http.Client, issuer string) (string, error) {
	endpoint := strings.TrimSuffix(issuer, "/") + DiscoveryPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return "", fmt.Errorf("discover %s: %w: %w", endpoint, err, ErrDiscovery)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("discover %s: %w: %w", endpoint, unwrapURLError(err), ErrDiscovery)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discover %s: status %d: %w", endpoint, resp.StatusCode, ErrDiscovery)
	}
	var doc discoveryDoc
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDiscoverySize)).Decode(&doc); err != nil {
		return "", fmt.Errorf("discover %s: decode: %w: %w", endpoint, err, ErrDiscovery)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("discover %s: document names issuer %q, want %q: %w", endpoint, doc.Issuer, issuer, ErrDiscovery)
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("discover %s: no jwks_uri: %w", endpoint, ErrDiscovery)
	}
	if err := checkURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discover %s: jwks_uri: %w: %w", endpoint, err, ErrDiscovery)
	}
	return doc.JWKSURI, nil
}

// unwrapURLError returns the cause inside a *url.Error, whose message would
// repeat the URL.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}
