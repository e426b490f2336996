package daemon

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/writ-dev/writ/internal/jwtissuer"
	"github.com/writ-dev/writ/internal/vault"
)

// jwksHandler serves one key set for every JWT the broker issues: the local
// signing key and, when transit-signed JWTs are configured, every version of
// the transit keys (so tokens signed before a rotation still verify). If
// Vault cannot be read, the answer is 503: a partial set would make relying
// parties reject valid tokens.
func jwksHandler(local *jwtissuer.Issuer, transit *vault.TransitJWTIssuer, log *slog.Logger) http.Handler {
	if transit == nil {
		return local.Handler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		type set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		var merged set
		for _, get := range []func() ([]byte, error){local.JWKS, func() ([]byte, error) { return transit.JWKS(r.Context()) }} {
			b, err := get()
			var s set
			if err == nil {
				err = json.Unmarshal(b, &s)
			}
			if err != nil {
				log.ErrorContext(r.Context(), "build jwks", "error", err)
				http.Error(w, "key set unavailable", http.StatusServiceUnavailable)
				return
			}
			merged.Keys = append(merged.Keys, s.Keys...)
		}
		b, err := json.Marshal(merged)
		if err != nil {
			http.Error(w, "key set unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", jwtissuer.JWKSContentType)
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write(b)
	})
}
