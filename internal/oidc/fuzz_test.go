package oidc_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/writ-dev/writ/internal/oidc"
	"github.com/writ-dev/writ/internal/textsafe"
)

// FuzzVerify feeds any bytes to Verify as an ID token (T37): it never
// panics, every error wraps ErrUnauthenticated with a message free of
// control characters, and only the seeded valid token is accepted.
func FuzzVerify(f *testing.F) {
	idp := newFakeIdP(f)
	v := newVerifier(f, idp.config())
	valid := sign(f, jwt.SigningMethodRS256, rsaKID, rsaKey(), idp.claims(nil))
	f.Add(valid)
	f.Add("")
	f.Add("a.b.c")
	f.Add(strings.Repeat("A", oidc.MaxTokenSize+1))
	f.Add(sign(f, jwt.SigningMethodRS256, rsaKID, rsaKey(), idp.claims(func(c jwt.MapClaims) { c["sub"] = "alice\x1b[2J" })))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.")
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := v.Verify(context.Background(), raw)
		if err != nil {
			if !errors.Is(err, oidc.ErrUnauthenticated) {
				t.Fatalf("Verify() err = %v, want ErrUnauthenticated", err)
			}
			if textsafe.Identifier(strings.ReplaceAll(err.Error(), " ", "")) != nil {
				t.Fatalf("Verify() error %q holds control characters", err)
			}
			return
		}
		if raw != valid {
			t.Fatalf("Verify() accepted a token that is not the valid seed: %q → %+v", raw, p)
		}
	})
}

// FuzzVerifyClaims signs any subject, email and group with a trusted key:
// whatever Verify accepts is safe to print (T43).
func FuzzVerifyClaims(f *testing.F) {
	idp := newFakeIdP(f)
	v := newVerifier(f, idp.config())
	f.Add("alice", "alice@example.test", "dba")
	f.Add("alice\x1b[2J", "a@b\u202e", "dba\u200b")
	f.Add("Zoë", "zoë@example.test", "группа")
	f.Add("", "\xff", "\n")
	f.Fuzz(func(t *testing.T, sub, email, group string) {
		token := sign(t, jwt.SigningMethodRS256, rsaKID, rsaKey(), idp.claims(func(c jwt.MapClaims) {
			c["sub"], c["email"], c["groups"] = sub, email, []string{group}
		}))
		p, err := v.Verify(context.Background(), token)
		if err != nil {
			if !errors.Is(err, oidc.ErrUnauthenticated) {
				t.Fatalf("Verify() err = %v, want ErrUnauthenticated", err)
			}
			return
		}
		for _, s := range append([]string{p.Subject, p.Email}, p.Groups...) {
			if err := textsafe.Identifier(s); err != nil {
				t.Fatalf("Verify() accepted unsafe claim %q: %v", s, err)
			}
		}
		if p.Subject == "" {
			t.Fatalf("Verify() accepted an empty subject")
		}
	})
}
