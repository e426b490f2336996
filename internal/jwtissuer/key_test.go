package jwtissuer_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/writ-dev/writ/internal/jwtissuer"
)

func TestNew_CreatesKeyFileWithMode0600(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			_, keyFile := newIssuer(t, alg, epoch)
			fi, err := os.Stat(keyFile)
			if err != nil {
				t.Fatalf("stat key file: %v", err)
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("key file mode = %04o, want 0600", got)
			}
			entries, err := os.ReadDir(filepath.Dir(keyFile))
			if err != nil {
				t.Fatalf("read key dir: %v", err)
			}
			if len(entries) != 1 {
				t.Errorf("key dir holds %d entries, want only the key file (no temporary files left)", len(entries))
			}
			data, err := os.ReadFile(keyFile)
			if err != nil {
				t.Fatalf("read key file: %v", err)
			}
			if block, _ := pem.Decode(data); block == nil || block.Type != "PRIVATE KEY" {
				t.Errorf("key file is not a PKCS#8 PEM block:\n%s", data)
			}
		})
	}
}

func TestNew_KeyPersistsAcrossRestarts(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			first, keyFile := newIssuer(t, alg, epoch)
			token := mustIssue(t, first, testGrant(epoch, time.Minute))

			second, err := jwtissuer.New(jwtissuer.Config{KeyFile: keyFile, Algorithm: alg, Issuer: testIssuer})
			if err != nil {
				t.Fatalf("New(existing key) err = %v", err)
			}
			if first.KeyID() != second.KeyID() {
				t.Errorf("kid after restart = %q, want %q", second.KeyID(), first.KeyID())
			}
			j1, _ := first.JWKS()
			j2, _ := second.JWKS()
			if !bytes.Equal(j1, j2) {
				t.Errorf("JWKS after restart = %s, want %s", j2, j1)
			}
			v := verifier{keys: fetchJWKS(t, second), audience: testAudience, issuer: testIssuer, now: epoch}
			if _, _, err := v.parse(token); err != nil {
				t.Errorf("token from before the restart rejected: %v", err)
			}
		})
	}
}

func TestNew_Errors(t *testing.T) {
	t.Parallel()
	// writeKey writes a fresh key for alg with mode perm and returns its path.
	writeKey := func(t *testing.T, alg string, perm os.FileMode) string {
		t.Helper()
		_, path := newIssuer(t, alg, epoch)
		if err := os.Chmod(path, perm); err != nil {
			t.Fatalf("chmod: %v", err)
		}
		return path
	}
	writeFile := func(t *testing.T, data string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "key.pem")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatalf("write: %v", err)
		}
		return path
	}
	tests := []struct {
		name string
		cfg  func(t *testing.T) jwtissuer.Config
		want error // nil: any error
	}{
		{"no key file", func(t *testing.T) jwtissuer.Config { return jwtissuer.Config{Issuer: testIssuer} }, nil},
		{"no issuer", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: filepath.Join(t.TempDir(), "k.pem")}
		}, nil},
		{"unsupported algorithm", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: filepath.Join(t.TempDir(), "k.pem"), Issuer: testIssuer, Algorithm: "HS256"}
		}, nil},
		{"key directory missing", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: filepath.Join(t.TempDir(), "nope", "k.pem"), Issuer: testIssuer}
		}, fs.ErrNotExist},
		{"key readable by group", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: writeKey(t, jwtissuer.AlgEdDSA, 0o640), Issuer: testIssuer}
		}, jwtissuer.ErrInsecureKeyFile},
		{"key readable by others", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: writeKey(t, jwtissuer.AlgES256, 0o604), Algorithm: jwtissuer.AlgES256, Issuer: testIssuer}
		}, jwtissuer.ErrInsecureKeyFile},
		{"key path is a directory", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: t.TempDir(), Issuer: testIssuer}
		}, jwtissuer.ErrInsecureKeyFile},
		{"Ed25519 key with ES256", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: writeKey(t, jwtissuer.AlgEdDSA, 0o600), Algorithm: jwtissuer.AlgES256, Issuer: testIssuer}
		}, jwtissuer.ErrKeyMismatch},
		{"P-256 key with EdDSA", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: writeKey(t, jwtissuer.AlgES256, 0o600), Issuer: testIssuer}
		}, jwtissuer.ErrKeyMismatch},
		{"not PEM", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: writeFile(t, "hello"), Issuer: testIssuer}
		}, nil},
		{"PEM but not PKCS#8", func(t *testing.T) jwtissuer.Config {
			return jwtissuer.Config{KeyFile: writeFile(t, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), Issuer: testIssuer}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			iss, err := jwtissuer.New(tt.cfg(t))
			if err == nil {
				t.Fatalf("New() = %v, nil; want an error", iss)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("New() err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNew_InsecureKeyFileIsNotRewritten(t *testing.T) {
	t.Parallel()
	_, keyFile := newIssuer(t, jwtissuer.AlgEdDSA, epoch)
	before, _ := os.ReadFile(keyFile)
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatalf("chmod: %v", err)
	}
	if _, err := jwtissuer.New(jwtissuer.Config{KeyFile: keyFile, Issuer: testIssuer}); !errors.Is(err, jwtissuer.ErrInsecureKeyFile) {
		t.Fatalf("New() err = %v, want %v", err, jwtissuer.ErrInsecureKeyFile)
	}
	after, _ := os.ReadFile(keyFile)
	if !bytes.Equal(before, after) {
		t.Errorf("New() changed an insecure key file instead of refusing it")
	}
}

// TestKeyID_RFC8037 checks the kid against the Ed25519 thumbprint of RFC 8037
// appendix A.3.
func TestKeyID_RFC8037(t *testing.T) {
	t.Parallel()
	seed, err := base64.RawURLEncoding.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rfc8037.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	iss, err := jwtissuer.New(jwtissuer.Config{KeyFile: path, Issuer: testIssuer})
	if err != nil {
		t.Fatalf("New() err = %v", err)
	}
	if got, want := iss.KeyID(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("KeyID() = %q, want %q (RFC 8037 A.3)", got, want)
	}
}

// TestKeyID_MatchesGoJOSE cross-checks the kid and the published key against
// an independent JOSE implementation.
func TestKeyID_MatchesGoJOSE(t *testing.T) {
	t.Parallel()
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			iss, _ := newIssuer(t, alg, epoch)
			set, err := iss.JWKS()
			if err != nil {
				t.Fatalf("JWKS() err = %v", err)
			}
			var ref jose.JSONWebKeySet
			if err := json.Unmarshal(set, &ref); err != nil {
				t.Fatalf("go-jose cannot parse JWKS %s: %v", set, err)
			}
			if len(ref.Keys) != 1 {
				t.Fatalf("JWKS has %d keys, want 1", len(ref.Keys))
			}
			k := ref.Keys[0]
			tp, err := k.Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatalf("go-jose Thumbprint() err = %v", err)
			}
			if got, want := iss.KeyID(), base64.RawURLEncoding.EncodeToString(tp); got != want {
				t.Errorf("KeyID() = %q, go-jose thumbprint = %q", got, want)
			}
			if k.KeyID != iss.KeyID() || k.Algorithm != alg || k.Use != "sig" || !k.IsPublic() {
				t.Errorf("JWK kid=%q alg=%q use=%q public=%v, want kid=%q alg=%q use=sig public", k.KeyID, k.Algorithm, k.Use, k.IsPublic(), iss.KeyID(), alg)
			}
		})
	}
}

func TestIssuer_Handler(t *testing.T) {
	t.Parallel()
	iss, _ := newIssuer(t, jwtissuer.AlgEdDSA, epoch)
	want, err := iss.JWKS()
	if err != nil {
		t.Fatalf("JWKS() err = %v", err)
	}
	tests := []struct {
		method     string
		wantStatus int
		wantBody   []byte
	}{
		{http.MethodGet, http.StatusOK, want},
		{http.MethodHead, http.StatusOK, nil},
		{http.MethodPost, http.StatusMethodNotAllowed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			iss.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, "/.well-known/jwks.json", nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("%s status = %d, want %d", tt.method, rec.Code, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				return
			}
			if got := rec.Header().Get("Content-Type"); got != jwtissuer.JWKSContentType {
				t.Errorf("Content-Type = %q, want %q", got, jwtissuer.JWKSContentType)
			}
			if got := rec.Header().Get("Cache-Control"); got != "public, max-age=300" {
				t.Errorf("Cache-Control = %q, want a short public max-age", got)
			}
			if !bytes.Equal(rec.Body.Bytes(), tt.wantBody) && !(tt.wantBody == nil && rec.Body.Len() == 0) {
				t.Errorf("body = %s, want %s", rec.Body.Bytes(), tt.wantBody)
			}
		})
	}
}
