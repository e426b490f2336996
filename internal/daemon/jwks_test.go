package daemon

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/writ-dev/writ/approval"
	"github.com/writ-dev/writ/internal/jwtissuer"
	"github.com/writ-dev/writ/internal/vault"
	"github.com/writ-dev/writ/internal/vault/vaulttest"
)

// The broker's JWKS holds the local key and every version of each transit
// key, so tokens signed before a rotation still verify (real Vault).
func TestJWKSHandler_LocalAndTransit(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	v.Mount(t, "transit", "transit")
	v.Write(t, "transit/keys/writ-jwt", map[string]any{"type": "ecdsa-p256"})
	hcl, err := vault.RecipePolicy(approval.Recipe{Kind: approval.KindVaultTransitJWT, TransitKey: "writ-jwt", Audience: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	v.Policy(t, "writ-transit", hcl)
	vc, err := vault.NewClient(t.Context(), vault.ClientConfig{Address: v.Addr, Auth: vault.AuthConfig{Token: v.Token(t, "writ-transit")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.Close() })
	transit, err := vault.NewTransitJWTIssuer(vault.TransitJWTConfig{Client: vc, Issuer: "https://writ.test", Keys: []string{"writ-jwt"}})
	if err != nil {
		t.Fatal(err)
	}
	local, err := jwtissuer.New(jwtissuer.Config{KeyFile: filepath.Join(t.TempDir(), "k.pem"), Issuer: "https://writ.test"})
	if err != nil {
		t.Fatal(err)
	}
	h := jwksHandler(local, transit, slog.New(slog.DiscardHandler))
	keys := func() map[string]bool {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET jwks = %d %s", rec.Code, rec.Body.String())
		}
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, k := range set.Keys {
			out[k.Kid] = true
		}
		return out
	}
	if got := keys(); len(got) != 2 || !got[local.KeyID()] || !got["writ-jwt:v1"] {
		t.Fatalf("keys = %v, want the local key and writ-jwt:v1", got)
	}
	v.Write(t, "transit/keys/writ-jwt/rotate", nil)
	if got := keys(); len(got) != 3 || !got["writ-jwt:v1"] || !got["writ-jwt:v2"] {
		t.Errorf("keys after rotation = %v, want v1 and v2 and the local key", got)
	}
}
