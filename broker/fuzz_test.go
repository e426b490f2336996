package broker

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/writ-dev/writ/internal/textsafe"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// FuzzBearerToken parses any authorization metadata (T37): no panic, and a
// token is returned only from exactly "Bearer <non-empty token>".
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "Bearer ", "bearer abc", "Basic abc", "Bearer  two spaces", "", "Bearer \x00", strings.Repeat("A", 9000)} {
		f.Add(s, false)
	}
	f.Add("Bearer a", true)
	f.Fuzz(func(t *testing.T, value string, twice bool) {
		md := metadata.Pairs("authorization", value)
		if twice {
			md.Append("authorization", value)
		}
		token, ok := bearerToken(metadata.NewIncomingContext(context.Background(), md))
		switch {
		case ok && (twice || token == "" || "Bearer "+token != value):
			t.Fatalf("bearerToken(%q, twice=%t) = %q, true", value, twice, token)
		case !ok && !twice && strings.HasPrefix(value, "Bearer ") && len(value) > len("Bearer "):
			t.Fatalf("bearerToken(%q) refused a well-formed header", value)
		}
	})
}

// FuzzCheckText fills a request's identifier and free-text fields with any
// text (T43): no panic; a request passes only if every identifier is safe
// and every free text is safe but for newlines; a refusal is a bad request
// whose message is safe to print.
func FuzzCheckText(f *testing.F) {
	f.Add("spiffe://example.org/api", "db-admin", "fix outage\nINC-1", "INC-1")
	f.Add("spiffe://example.org/api\x1b[2J", "db\u202e", "fix\routage", "INC\n1")
	f.Add("\xff", "\u200b", "\t", "")
	f.Fuzz(func(t *testing.T, beneficiary, entitlement, reason, ticket string) {
		req := &adminv1.CreateRequestRequest{Beneficiary: beneficiary, Entitlement: entitlement, Reason: reason, Ticket: ticket}
		err := checkText(req)
		safe := textsafe.Identifier(beneficiary) == nil && textsafe.Identifier(entitlement) == nil &&
			textsafe.FreeText(reason) == nil && textsafe.Identifier(ticket) == nil
		if (err == nil) != safe {
			t.Fatalf("checkText(%+v) = %v, want ok=%t", req, err, safe)
		}
		if err != nil {
			if !errors.Is(err, errBadRequest) || textsafe.Identifier(strings.ReplaceAll(err.Error(), " ", "")) != nil {
				t.Fatalf("checkText() err = %q", err)
			}
		}
	})
}
