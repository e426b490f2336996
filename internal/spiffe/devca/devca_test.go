package devca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/writ-dev/writ/internal/spiffe/devca"
)

var (
	testTD  = spiffeid.RequireTrustDomainFromString("example.org")
	testID  = spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/api")
	testNow = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func mustNew(t *testing.T) *devca.CA {
	t.Helper()
	ca, err := devca.New(testTD, devca.WithNow(fixedClock(testNow)))
	if err != nil {
		t.Fatalf("New(%q) err = %v", testTD, err)
	}
	return ca
}

func TestNew_CACertificate(t *testing.T) {
	t.Parallel()
	ca := mustNew(t)
	cert := ca.Certificate()
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA cert IsCA = %v, KeyUsage = %v; want CA with keyCertSign", cert.IsCA, cert.KeyUsage)
	}
	if got, want := cert.NotAfter.Sub(cert.NotBefore), devca.DefaultValidity; got != want {
		t.Errorf("CA validity = %s, want %s", got, want)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://example.org" {
		t.Errorf("CA URIs = %v, want [spiffe://example.org]", cert.URIs)
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("CA key type = %T, want *ecdsa.PublicKey", cert.PublicKey)
	}
	if got := ca.Bundle().X509Authorities(); len(got) != 1 || !got[0].Equal(cert) {
		t.Errorf("Bundle() authorities = %d certs, want the CA certificate", len(got))
	}
	if got := ca.TrustDomain(); got != testTD {
		t.Errorf("TrustDomain() = %q, want %q", got, testTD)
	}
}

func TestCA_Issue(t *testing.T) {
	t.Parallel()
	ca := mustNew(t)
	svid, err := ca.Issue(testID, devca.IssueOptions{})
	if err != nil {
		t.Fatalf("Issue() err = %v", err)
	}
	leaf := svid.Certificates[0]

	gotID, _, err := x509svid.Verify(svid.Certificates, ca.Bundle(), x509svid.WithTime(testNow.Add(time.Hour)))
	if err != nil {
		t.Fatalf("x509svid.Verify() err = %v", err)
	}
	if gotID != testID || svid.ID != testID {
		t.Errorf("Verify() id = %q, svid.ID = %q, want %q", gotID, svid.ID, testID)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("leaf IsCA = %v, KeyUsage = %v; want non-CA, digitalSignature only", leaf.IsCA, leaf.KeyUsage)
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != wantEKU[0] || leaf.ExtKeyUsage[1] != wantEKU[1] {
		t.Errorf("leaf ExtKeyUsage = %v, want %v", leaf.ExtKeyUsage, wantEKU)
	}
	if !leaf.NotBefore.Equal(testNow) || !leaf.NotAfter.Equal(testNow.Add(devca.DefaultTTL)) {
		t.Errorf("leaf validity = %s..%s, want %s..%s", leaf.NotBefore, leaf.NotAfter, testNow, testNow.Add(devca.DefaultTTL))
	}

	// The SVID survives go-spiffe's own parser, which enforces the spec.
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatalf("Marshal() err = %v", err)
	}
	if _, err := x509svid.Parse(certPEM, keyPEM); err != nil {
		t.Errorf("x509svid.Parse(issued) err = %v", err)
	}

	// A second SVID has a different serial.
	other, err := ca.Issue(testID, devca.IssueOptions{})
	if err != nil {
		t.Fatalf("Issue() second err = %v", err)
	}
	if other.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Errorf("two issued SVIDs share serial %s", leaf.SerialNumber)
	}
}

func TestCA_Issue_Options(t *testing.T) {
	t.Parallel()
	ca := mustNew(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		opts          devca.IssueOptions
		wantNotBefore time.Time
		wantNotAfter  time.Time
	}{
		{
			name:          "ttl sets not after",
			opts:          devca.IssueOptions{TTL: time.Hour},
			wantNotBefore: testNow,
			wantNotAfter:  testNow.Add(time.Hour),
		},
		{
			name:          "ttl is capped at the CA's expiry",
			opts:          devca.IssueOptions{TTL: 2 * devca.DefaultValidity},
			wantNotBefore: testNow,
			wantNotAfter:  testNow.Add(devca.DefaultValidity),
		},
		{
			name:          "expired window override",
			opts:          devca.IssueOptions{NotBefore: testNow.Add(-2 * time.Hour), NotAfter: testNow.Add(-time.Hour)},
			wantNotBefore: testNow.Add(-2 * time.Hour),
			wantNotAfter:  testNow.Add(-time.Hour),
		},
		{
			name:          "not yet valid override",
			opts:          devca.IssueOptions{NotBefore: testNow.Add(time.Hour), TTL: time.Hour},
			wantNotBefore: testNow.Add(time.Hour),
			wantNotAfter:  testNow.Add(2 * time.Hour),
		},
		{
			name:          "caller supplied key",
			opts:          devca.IssueOptions{Key: key},
			wantNotBefore: testNow,
			wantNotAfter:  testNow.Add(devca.DefaultTTL),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svid, err := ca.Issue(testID, tt.opts)
			if err != nil {
				t.Fatalf("Issue(%+v) err = %v", tt.opts, err)
			}
			leaf := svid.Certificates[0]
			if !leaf.NotBefore.Equal(tt.wantNotBefore) || !leaf.NotAfter.Equal(tt.wantNotAfter) {
				t.Errorf("validity = %s..%s, want %s..%s", leaf.NotBefore, leaf.NotAfter, tt.wantNotBefore, tt.wantNotAfter)
			}
			if tt.opts.Key != nil && !key.PublicKey.Equal(leaf.PublicKey) {
				t.Errorf("leaf public key is not the supplied key's")
			}
		})
	}
}

func TestCA_Issue_Errors(t *testing.T) {
	t.Parallel()
	ca := mustNew(t)
	tests := []struct {
		name string
		id   spiffeid.ID
		opts devca.IssueOptions
		want error
	}{
		{"id in another trust domain", spiffeid.RequireFromString("spiffe://other.org/x"), devca.IssueOptions{}, devca.ErrTrustDomainMismatch},
		{"trust domain id without path", testTD.ID(), devca.IssueOptions{}, devca.ErrInvalid},
		{"zero id", spiffeid.ID{}, devca.IssueOptions{}, devca.ErrInvalid},
		{"negative ttl", testID, devca.IssueOptions{TTL: -time.Second}, devca.ErrInvalid},
		{"empty window", testID, devca.IssueOptions{NotBefore: testNow, NotAfter: testNow}, devca.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := ca.Issue(tt.id, tt.opts); !errors.Is(err, tt.want) {
				t.Errorf("Issue(%q) err = %v, want %v", tt.id, err, tt.want)
			}
		})
	}
}

func TestCA_Issue_OtherCADoesNotVerify(t *testing.T) {
	t.Parallel()
	ca, other := mustNew(t), mustNew(t)
	svid, err := other.Issue(testID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, ca.Bundle(), x509svid.WithTime(testNow)); err == nil {
		t.Errorf("Verify(SVID from other CA, bundle) err = nil, want error")
	}
}

func TestLoadOrCreate_Reuses(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	first, err := devca.LoadOrCreate(dir, testTD, fixedClock(testNow))
	if err != nil {
		t.Fatalf("LoadOrCreate() first err = %v", err)
	}
	second, err := devca.LoadOrCreate(dir, testTD, fixedClock(testNow.Add(24*time.Hour)))
	if err != nil {
		t.Fatalf("LoadOrCreate() second err = %v", err)
	}
	if !first.Certificate().Equal(second.Certificate()) {
		t.Fatalf("LoadOrCreate() second CA differs from the first")
	}
	// An SVID from the reloaded CA verifies against the first CA's bundle,
	// so the reloaded key is the same key.
	svid, err := second.Issue(testID, devca.IssueOptions{})
	if err != nil {
		t.Fatalf("Issue() err = %v", err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, first.Bundle(), x509svid.WithTime(testNow.Add(25*time.Hour))); err != nil {
		t.Errorf("Verify(SVID from reloaded CA, original bundle) err = %v", err)
	}

	assertMode(t, filepath.Join(dir, devca.KeyFileName), 0o600)
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o700 {
		t.Errorf("CA dir mode = %o, want 700", got)
	}
}

func TestLoadOrCreate_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		td    spiffeid.TrustDomain
		now   time.Time
		want  error
	}{
		{
			name:  "other trust domain",
			setup: func(t *testing.T, dir string) { mustCreate(t, dir) },
			td:    spiffeid.RequireTrustDomainFromString("other.org"),
			now:   testNow,
			want:  devca.ErrTrustDomainMismatch,
		},
		{
			name:  "expired CA",
			setup: func(t *testing.T, dir string) { mustCreate(t, dir) },
			td:    testTD,
			now:   testNow.Add(devca.DefaultValidity + time.Second),
			want:  devca.ErrExpired,
		},
		{
			name: "key missing",
			setup: func(t *testing.T, dir string) {
				mustCreate(t, dir)
				if err := os.Remove(filepath.Join(dir, devca.KeyFileName)); err != nil {
					t.Fatal(err)
				}
			},
			td:   testTD,
			now:  testNow,
			want: fs.ErrNotExist,
		},
		{
			name: "key from another CA",
			setup: func(t *testing.T, dir string) {
				mustCreate(t, dir)
				otherDir := t.TempDir()
				mustCreate(t, otherDir)
				b, err := os.ReadFile(filepath.Join(otherDir, devca.KeyFileName))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, devca.KeyFileName), b, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			td:   testTD,
			now:  testNow,
			want: devca.ErrInvalid,
		},
		{
			name: "garbage certificate",
			setup: func(t *testing.T, dir string) {
				mustCreate(t, dir)
				if err := os.WriteFile(filepath.Join(dir, devca.CertFileName), []byte("not pem"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			td:   testTD,
			now:  testNow,
			want: devca.ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tt.setup(t, dir)
			if _, err := devca.LoadOrCreate(dir, tt.td, fixedClock(tt.now)); !errors.Is(err, tt.want) {
				t.Errorf("LoadOrCreate() err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCreate_RefusesToOverwrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustCreate(t, dir)
	if _, err := devca.Create(dir, testTD); !errors.Is(err, devca.ErrExists) {
		t.Errorf("Create() over existing CA err = %v, want %v", err, devca.ErrExists)
	}
}

func TestWriteSVID(t *testing.T) {
	t.Parallel()
	ca := mustNew(t)
	svid, err := ca.Issue(testID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "svid")
	files, err := devca.WriteSVID(dir, svid, ca.Bundle())
	if err != nil {
		t.Fatalf("WriteSVID() err = %v", err)
	}
	want := devca.Files{
		Cert:   filepath.Join(dir, devca.SVIDFileName),
		Key:    filepath.Join(dir, devca.SVIDKeyFileName),
		Bundle: filepath.Join(dir, devca.BundleFileName),
	}
	if files != want {
		t.Errorf("WriteSVID() files = %+v, want %+v", files, want)
	}
	assertMode(t, files.Key, 0o600)
	assertMode(t, files.Cert, 0o644)
	assertMode(t, files.Bundle, 0o644)

	loaded, err := x509svid.Load(files.Cert, files.Key)
	if err != nil {
		t.Fatalf("x509svid.Load() err = %v", err)
	}
	if loaded.ID != testID || !loaded.Certificates[0].Equal(svid.Certificates[0]) {
		t.Errorf("loaded SVID %q differs from written %q", loaded.ID, svid.ID)
	}
	bundle, err := x509bundle.Load(testTD, files.Bundle)
	if err != nil {
		t.Fatalf("x509bundle.Load() err = %v", err)
	}
	if !bundle.Equal(ca.Bundle()) {
		t.Errorf("loaded bundle differs from written bundle")
	}

	// Rewriting replaces the files and leaves no temporary files behind.
	next, err := ca.Issue(testID, devca.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devca.WriteSVID(dir, next, ca.Bundle()); err != nil {
		t.Fatalf("WriteSVID() rewrite err = %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want only the three SVID files", names)
	}
	reloaded, err := x509svid.Load(files.Cert, files.Key)
	if err != nil {
		t.Fatalf("x509svid.Load() after rewrite err = %v", err)
	}
	if reloaded.Certificates[0].SerialNumber.Cmp(next.Certificates[0].SerialNumber) != 0 {
		t.Errorf("rewritten SVID serial = %s, want %s", reloaded.Certificates[0].SerialNumber, next.Certificates[0].SerialNumber)
	}
}

func mustCreate(t *testing.T, dir string) *devca.CA {
	t.Helper()
	ca, err := devca.Create(dir, testTD, devca.WithNow(fixedClock(testNow)))
	if err != nil {
		t.Fatalf("Create(%s) err = %v", dir, err)
	}
	return ca
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %o, want %o", filepath.Base(path), got, want)
	}
}
