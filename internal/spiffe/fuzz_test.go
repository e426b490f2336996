package spiffe_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
	"github.com/writ-dev/writ/internal/textsafe"
)

// FuzzParseID checks the SPIFFE ID parser on any text (T37): no panic, and
// whatever it accepts go-spiffe accepts as the same ID, is at most 2048
// bytes, is a safe identifier to print, and has no dot segment, "%", "?",
// "#", "@" or ":" after the scheme.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"spiffe://example.org/ns/prod/sa/api", "spiffe://example.org", "SPIFFE://x/y", "spiffe://a:1/b",
		"spiffe://a/b/../c", "spiffe://a/b/", "spiffe://a/%41", "spiffe:///x", "spiffe://a/b?c#d", "spiffe://a/b\x1b", "spiffe://ex\u202eample/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffe.ParseID(s)
		if err != nil {
			if _, ok := spiffe.RuleOf(err); !ok {
				t.Fatalf("ParseID(%q) err = %v names no rule", s, err)
			}
			return
		}
		g, gerr := spiffeid.FromString(s)
		switch {
		case gerr != nil:
			t.Fatalf("ParseID(%q) accepted what go-spiffe refuses: %v", s, gerr)
		case g != id || id.String() != s:
			t.Fatalf("ParseID(%q) = %q, go-spiffe %q", s, id, g)
		case len(s) > spiffe.MaxIDLen:
			t.Fatalf("ParseID accepted %d bytes", len(s))
		case textsafe.Identifier(s) != nil:
			t.Fatalf("ParseID(%q) accepted unsafe text", s)
		case strings.ContainsAny(s[len("spiffe://"):], "%?#@:") || strings.Contains(s, "/./") || strings.Contains(s, "/../") || strings.HasSuffix(s, "/.") || strings.HasSuffix(s, "/.."):
			t.Fatalf("ParseID(%q) accepted a forbidden form", s)
		}
	})
}

// FuzzVerifyX509SVID feeds any bytes as a peer's certificate chain (split
// in two at cut) to the handshake's verifier (T37): no panic, and anything
// accepted is a workload ID of the trust domain that is safe to print.
func FuzzVerifyX509SVID(f *testing.F) {
	ca := spiffetest.NewCA(f, testTD)
	bundle := ca.Bundle()
	valid := ca.Leaf(f, "spiffe://example.org/workload", nil)
	viaIntermediate := ca.Intermediate(f, nil).Leaf(f, "spiffe://example.org/workload", nil)
	f.Add(valid.Certificate[0], []byte(nil))
	f.Add(viaIntermediate.Certificate[0], viaIntermediate.Certificate[1])
	f.Add(ca.Leaf(f, "spiffe://example.org", nil).Certificate[0], []byte(nil))
	f.Add(ca.Leaf(f, "spiffe://example.org/a\x00b", nil).Certificate[0], []byte(nil))
	f.Add([]byte{0x30, 0x00}, []byte{0x30})
	f.Fuzz(func(t *testing.T, leaf, second []byte) {
		raw := [][]byte{leaf}
		if len(second) > 0 {
			raw = append(raw, second)
		}
		id, chains, err := spiffe.VerifyX509SVID(raw, bundle, time.Time{})
		if err != nil {
			if !errors.Is(err, spiffe.ErrInvalidSVID) {
				t.Fatalf("VerifyX509SVID() err = %v, want ErrInvalidSVID", err)
			}
			return
		}
		if !id.MemberOf(testTD) || id.Path() == "" || len(chains) == 0 || textsafe.Identifier(id.String()) != nil {
			t.Fatalf("VerifyX509SVID() accepted %q with %d chains", id, len(chains))
		}
	})
}

// FuzzVerifyJWTSVID feeds any text as a bearer JWT-SVID (T37): no panic,
// every error wraps ErrInvalidJWTSVID, and only tokens for clientID signed
// by the trusted key are accepted.
func FuzzVerifyJWTSVID(f *testing.F) {
	a := spiffetest.NewJWTAuthority(f, testTD)
	v, err := spiffe.NewJWTVerifier(spiffe.JWTVerifierConfig{Bundles: jwtbundle.NewSet(a.Bundle()), TrustDomain: testTD, Audience: testAudience})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{"sub": clientID.String(), "aud": testAudience, "exp": now.Add(time.Hour).Unix()}
	f.Add(a.MintRaw(f, nil, claims))
	f.Add(a.MintRaw(f, map[string]any{"alg": "ES256", "kid": a.KeyID(), "jwk": "x"}, claims))
	f.Add(a.MintRaw(f, nil, map[string]any{"sub": "spiffe://example.org", "aud": testAudience, "exp": now.Add(time.Hour).Unix()}))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add(`{"protected":"e30","payload":"e30","signature":""}`)
	f.Add(strings.Repeat(".", 100))
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.VerifyJWTSVID(context.Background(), token)
		if err != nil {
			if !errors.Is(err, spiffe.ErrInvalidJWTSVID) {
				t.Fatalf("VerifyJWTSVID() err = %v, want ErrInvalidJWTSVID", err)
			}
			return
		}
		if id != clientID {
			t.Fatalf("VerifyJWTSVID() accepted %q", id)
		}
	})
}
