package jwtissuer

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// RevokedContentType is the media type of the revoked-JWT list.
const RevokedContentType = "application/json"

// Revoked is one revoked JWT ID and when the token would have expired.
type Revoked struct {
	JTI     string    `json:"jti"`
	Expires time.Time `json:"exp"`
}

// RevokedHandler serves the JWT deny-list as
// {"revoked":[{"jti":"g_…","exp":"2030-01-01T00:00:00Z"}],"generated_at":…}.
// Relying parties fetch it beside the JWKS and refuse any token whose jti is
// listed. list returns the entries not yet expired at now. Errors answer 503:
// a relying party must not take a failed fetch for an empty list.
func RevokedHandler(list func(ctx context.Context, now time.Time) ([]Revoked, error), now func() time.Time) http.Handler {
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		t := now().UTC()
		revoked, err := list(r.Context(), t)
		if err != nil {
			http.Error(w, "deny-list unavailable", http.StatusServiceUnavailable)
			return
		}
		if revoked == nil {
			revoked = []Revoked{}
		}
		b, err := json.Marshal(struct {
			Revoked     []Revoked `json:"revoked"`
			GeneratedAt time.Time `json:"generated_at"`
		}{revoked, t})
		if err != nil {
			http.Error(w, "deny-list unavailable", http.StatusServiceUnavailable)
			return
		}
		h := w.Header()
		h.Set("Content-Type", RevokedContentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(b)
	})
}
