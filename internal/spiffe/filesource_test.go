package spiffe_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/testenv"
)

var testNow = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// writeSVIDFiles issues an SVID for id from ca and writes it with the CA's
// bundle to a new directory.
func writeSVIDFiles(t *testing.T, ca *devca.CA, id spiffeid.ID) (devca.Files, *x509svid.SVID) {
	t.Helper()
	svid := issue(t, ca, id, devca.IssueOptions{})
	files, err := devca.WriteSVID(t.TempDir(), svid, ca.Bundle())
	if err != nil {
		t.Fatalf("WriteSVID() err = %v", err)
	}
	return files, svid
}

func mustNewFileSource(t *testing.T, cfg spiffe.FileConfig) *spiffe.FileSource {
	t.Helper()
	src, err := spiffe.NewFileSource(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewFileSource() err = %v", err)
	}
	t.Cleanup(func() {
		if err := src.Close(); err != nil {
			t.Errorf("Close() err = %v", err)
		}
	})
	return src
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNewFileSource(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(testTD, devca.WithNow(fixedClock(testNow)))
	if err != nil {
		t.Fatal(err)
	}
	files, svid := writeSVIDFiles(t, ca, clientID)
	src := mustNewFileSource(t, spiffe.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Now: fixedClock(testNow)})

	got, err := src.GetX509SVID()
	if err != nil {
		t.Fatalf("GetX509SVID() err = %v", err)
	}
	if got.ID != clientID || serialOf(got).Cmp(serialOf(svid)) != 0 {
		t.Errorf("GetX509SVID() = %q serial %s, want %q serial %s", got.ID, serialOf(got), clientID, serialOf(svid))
	}
	bundle, err := src.GetX509BundleForTrustDomain(testTD)
	if err != nil {
		t.Fatalf("GetX509BundleForTrustDomain(%q) err = %v", testTD, err)
	}
	if !bundle.Equal(ca.Bundle()) {
		t.Errorf("GetX509BundleForTrustDomain() returned a different bundle")
	}
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.org")); err == nil {
		t.Errorf("GetX509BundleForTrustDomain(other.org) err = nil, want error")
	}

	if err := src.Close(); err != nil {
		t.Fatalf("Close() err = %v", err)
	}
	if _, err := src.GetX509SVID(); !errors.Is(err, spiffe.ErrClosed) {
		t.Errorf("GetX509SVID() after Close err = %v, want %v", err, spiffe.ErrClosed)
	}
	if _, err := src.GetX509BundleForTrustDomain(testTD); !errors.Is(err, spiffe.ErrClosed) {
		t.Errorf("GetX509BundleForTrustDomain() after Close err = %v, want %v", err, spiffe.ErrClosed)
	}
}

func TestNewFileSource_TrustDomainOverride(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(testTD, devca.WithNow(fixedClock(testNow)))
	if err != nil {
		t.Fatal(err)
	}
	peerTD := spiffeid.RequireTrustDomainFromString("peers.example")
	peerCA, err := devca.New(peerTD, devca.WithNow(fixedClock(testNow)))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := writeSVIDFiles(t, ca, clientID)
	copyFile(t, filepath.Join(writeDir(t, peerCA), devca.BundleFileName), files.Bundle)

	src := mustNewFileSource(t, spiffe.FileConfig{
		CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle,
		TrustDomain: peerTD, Now: fixedClock(testNow),
	})
	if _, err := src.GetX509BundleForTrustDomain(peerTD); err != nil {
		t.Errorf("GetX509BundleForTrustDomain(%q) err = %v", peerTD, err)
	}
	if _, err := src.GetX509BundleForTrustDomain(testTD); err == nil {
		t.Errorf("GetX509BundleForTrustDomain(%q) err = nil, want error: the bundle is for %q", testTD, peerTD)
	}
}

// writeDir writes a throwaway SVID from ca and returns its directory, for
// tests that need another CA's bundle.pem.
func writeDir(t *testing.T, ca *devca.CA) string {
	t.Helper()
	id := spiffeid.RequireFromPath(ca.TrustDomain(), "/x")
	files, _ := writeSVIDFiles(t, ca, id)
	return filepath.Dir(files.Cert)
}

func TestNewFileSource_Errors(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(testTD, devca.WithNow(fixedClock(testNow)))
	if err != nil {
		t.Fatal(err)
	}
	foreignCA, err := devca.New(testTD, devca.WithNow(fixedClock(testNow)))
	if err != nil {
		t.Fatal(err)
	}

	type file int
	const (
		certFile file = iota
		keyFile
		bundleFile
	)
	tests := []struct {
		name string
		// mutate breaks a valid set of files.
		mutate   func(t *testing.T, files devca.Files)
		now      time.Time
		want     error
		wantFile file // the file the error must name
	}{
		{
			name:     "missing certificate file",
			mutate:   func(t *testing.T, f devca.Files) { mustRemove(t, f.Cert) },
			now:      testNow,
			want:     fs.ErrNotExist,
			wantFile: certFile,
		},
		{
			name:     "missing key file",
			mutate:   func(t *testing.T, f devca.Files) { mustRemove(t, f.Key) },
			now:      testNow,
			want:     fs.ErrNotExist,
			wantFile: keyFile,
		},
		{
			name:     "missing bundle file",
			mutate:   func(t *testing.T, f devca.Files) { mustRemove(t, f.Bundle) },
			now:      testNow,
			want:     fs.ErrNotExist,
			wantFile: bundleFile,
		},
		{
			name: "key belongs to another SVID",
			mutate: func(t *testing.T, f devca.Files) {
				other, _ := writeSVIDFiles(t, ca, clientID)
				copyFile(t, other.Key, f.Key)
			},
			now:      testNow,
			want:     spiffe.ErrKeyMismatch,
			wantFile: keyFile,
		},
		{
			name:     "expired certificate",
			mutate:   func(*testing.T, devca.Files) {},
			now:      testNow.Add(devca.DefaultTTL + time.Second),
			want:     spiffe.ErrNotCurrent,
			wantFile: certFile,
		},
		{
			name:     "certificate not yet valid",
			mutate:   func(*testing.T, devca.Files) {},
			now:      testNow.Add(-time.Second),
			want:     spiffe.ErrNotCurrent,
			wantFile: certFile,
		},
		{
			name:     "certificate file is not PEM",
			mutate:   func(t *testing.T, f devca.Files) { writeFile(t, f.Cert, "hello") },
			now:      testNow,
			want:     spiffe.ErrInvalidSVID,
			wantFile: certFile,
		},
		{
			name: "certificate without a URI SAN",
			mutate: func(t *testing.T, f devca.Files) {
				writeFile(t, f.Cert, selfSignedPEM(t, testNow))
			},
			now:      testNow,
			want:     spiffe.ErrInvalidSVID,
			wantFile: certFile,
		},
		{
			name: "key is SEC1, not PKCS#8",
			mutate: func(t *testing.T, f devca.Files) {
				svid, err := x509svid.Load(f.Cert, f.Key)
				if err != nil {
					t.Fatal(err)
				}
				der, err := x509.MarshalECPrivateKey(svid.PrivateKey.(*ecdsa.PrivateKey))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, f.Key, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
			},
			now:      testNow,
			want:     spiffe.ErrInvalidSVID,
			wantFile: keyFile,
		},
		{
			name: "bundle from another CA",
			mutate: func(t *testing.T, f devca.Files) {
				copyFile(t, filepath.Join(writeDir(t, foreignCA), devca.BundleFileName), f.Bundle)
			},
			now:      testNow,
			want:     spiffe.ErrInvalidSVID,
			wantFile: bundleFile,
		},
		{
			name: "bundle file is malformed",
			mutate: func(t *testing.T, f devca.Files) {
				writeFile(t, f.Bundle, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
			},
			now:      testNow,
			want:     spiffe.ErrInvalidSVID,
			wantFile: bundleFile,
		},
		{
			name:     "bundle file is empty",
			mutate:   func(t *testing.T, f devca.Files) { writeFile(t, f.Bundle, "") },
			now:      testNow,
			want:     spiffe.ErrInvalidSVID,
			wantFile: bundleFile,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files, _ := writeSVIDFiles(t, ca, clientID)
			tt.mutate(t, files)
			_, err := spiffe.NewFileSource(context.Background(), spiffe.FileConfig{
				CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Now: fixedClock(tt.now),
			})
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewFileSource() err = %v, want %v", err, tt.want)
			}
			name := [...]string{certFile: files.Cert, keyFile: files.Key, bundleFile: files.Bundle}[tt.wantFile]
			if !strings.Contains(err.Error(), name) {
				t.Errorf("NewFileSource() err = %q, want it to name %s", err, name)
			}
		})
	}
}

func TestNewFileSource_Config(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	files, _ := writeSVIDFiles(t, ca, clientID)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		cfg  spiffe.FileConfig
		want error
	}{
		{"no cert file", context.Background(), spiffe.FileConfig{KeyFile: files.Key, BundleFile: files.Bundle}, spiffe.ErrConfig},
		{"no key file", context.Background(), spiffe.FileConfig{CertFile: files.Cert, BundleFile: files.Bundle}, spiffe.ErrConfig},
		{"no bundle file", context.Background(), spiffe.FileConfig{CertFile: files.Cert, KeyFile: files.Key}, spiffe.ErrConfig},
		{"negative interval", context.Background(), spiffe.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Interval: -time.Second}, spiffe.ErrConfig},
		{"canceled context", canceled, spiffe.FileConfig{CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := spiffe.NewFileSource(tt.ctx, tt.cfg); !errors.Is(err, tt.want) {
				t.Errorf("NewFileSource() err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestFileSource_Rotation rewrites the files with a new SVID and waits until
// new handshakes present it.
func TestFileSource_Rotation(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	files, first := writeSVIDFiles(t, ca, clientID)
	src := mustNewFileSource(t, spiffe.FileConfig{
		CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle, Interval: 10 * time.Millisecond,
	})

	serverSrc := newMemSource(issue(t, ca, serverID, devca.IssueOptions{}), ca.Bundle())
	var seen serialRecorder
	ts := startServer(t, spiffe.ServerCredentials(serverSrc, seen.wrap(tlsconfig.AuthorizeMemberOf(testTD))))
	clientCreds := spiffe.ClientCredentials(src, tlsconfig.AuthorizeID(serverID))

	if err := check(t, ts.addr, clientCreds); err != nil {
		t.Fatalf("Check() before rotation err = %v", err)
	}
	if got := seen.get(); got.Cmp(serialOf(first)) != 0 {
		t.Fatalf("server saw serial %s before rotation, want %s", got, serialOf(first))
	}

	second := issue(t, ca, clientID, devca.IssueOptions{})
	if _, err := devca.WriteSVID(filepath.Dir(files.Cert), second, ca.Bundle()); err != nil {
		t.Fatalf("WriteSVID() err = %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "a handshake presenting the rotated SVID", func() bool {
		if err := check(t, ts.addr, clientCreds); err != nil {
			t.Fatalf("Check() during rotation err = %v", err)
		}
		return seen.get().Cmp(serialOf(second)) == 0
	})
}

// TestFileSource_BrokenReloadKeepsPrevious breaks the files on disk and checks
// that the source keeps serving the last good SVID, warns naming the file,
// never logs key material, and recovers when the files are fixed.
func TestFileSource_BrokenReloadKeepsPrevious(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	files, first := writeSVIDFiles(t, ca, clientID)
	keyPEM, err := os.ReadFile(files.Key)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	src := mustNewFileSource(t, spiffe.FileConfig{
		CertFile: files.Cert, KeyFile: files.Key, BundleFile: files.Bundle,
		Interval: 10 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	assertServing := func(t *testing.T, want *x509svid.SVID) {
		t.Helper()
		got, err := src.GetX509SVID()
		if err != nil {
			t.Fatalf("GetX509SVID() err = %v", err)
		}
		if serialOf(got).Cmp(serialOf(want)) != 0 {
			t.Errorf("GetX509SVID() serial = %s, want %s", serialOf(got), serialOf(want))
		}
	}

	// A corrupt certificate file.
	writeFile(t, files.Cert, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
	testenv.Eventually(t, 10*time.Second, "a warning naming the certificate file", func() bool {
		out := logs.String()
		return strings.Contains(out, "level=WARN") && strings.Contains(out, files.Cert)
	})
	assertServing(t, first)

	// A certificate from another SVID beside the old key.
	other := issue(t, ca, clientID, devca.IssueOptions{})
	otherFiles, err := devca.WriteSVID(t.TempDir(), other, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, otherFiles.Cert, files.Cert)
	testenv.Eventually(t, 10*time.Second, "a key mismatch warning", func() bool {
		return strings.Contains(logs.String(), spiffe.ErrKeyMismatch.Error())
	})
	assertServing(t, first)

	// Fixing the files is picked up.
	copyFile(t, otherFiles.Key, files.Key)
	testenv.Eventually(t, 10*time.Second, "the fixed SVID to be served", func() bool {
		got, err := src.GetX509SVID()
		return err == nil && serialOf(got).Cmp(serialOf(other)) == 0
	})

	out := logs.String()
	otherKey, err := os.ReadFile(otherFiles.Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"PRIVATE KEY", pemBody(t, keyPEM), pemBody(t, otherKey)} {
		if strings.Contains(out, secret) {
			t.Errorf("logs contain key material %.20q...", secret)
		}
	}
}

// pemBody returns the first base64 line of a PEM block, enough to recognise
// it in logs.
func pemBody(t *testing.T, b []byte) string {
	t.Helper()
	lines := strings.Split(string(b), "\n")
	if len(lines) < 2 || lines[1] == "" {
		t.Fatalf("unexpected PEM layout")
	}
	return lines[1]
}

// selfSignedPEM returns a self-signed certificate with no URI SAN.
func selfSignedPEM(t *testing.T, now time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "not an SVID"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
