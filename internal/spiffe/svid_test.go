package spiffe_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc/credentials"

	"github.com/writ-dev/writ/internal/spiffe"
	"github.com/writ-dev/writ/internal/spiffe/devca"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
)

// x509Case is one certificate breaking one rule of the SPIFFE-ID or
// X509-SVID specification.
type x509Case struct {
	name string
	// rule is the rule VerifyX509SVID must report; nil when crypto/x509
	// already refuses to parse the certificate (still rejected).
	rule *spiffe.Rule
	mint func(t *testing.T, ca *spiffetest.CA) tls.Certificate
}

func leaf(uri string, mutate func(*x509.Certificate)) func(*testing.T, *spiffetest.CA) tls.Certificate {
	return func(t *testing.T, ca *spiffetest.CA) tls.Certificate { return ca.Leaf(t, uri, mutate) }
}

func viaIntermediate(mutate func(*x509.Certificate)) func(*testing.T, *spiffetest.CA) tls.Certificate {
	return func(t *testing.T, ca *spiffetest.CA) tls.Certificate {
		return ca.Intermediate(t, mutate).Leaf(t, "spiffe://example.org/workload", nil)
	}
}

const goodURI = "spiffe://example.org/workload"

// x509Cases has one certificate per rule (see spiffe.Rule for the table).
func x509Cases(t *testing.T) []x509Case {
	return []x509Case{
		{"SPIFFE-ID §2 scheme https", spiffe.RuleIDScheme, leaf("https://example.org/workload", nil)},
		{"SPIFFE-ID §2 scheme uppercase", spiffe.RuleIDScheme, leaf("SPIFFE://example.org/workload", nil)},
		{"SPIFFE-ID §2 query", spiffe.RuleIDPathChar, leaf("spiffe://example.org/workload?x=1", nil)},
		{"SPIFFE-ID §2 fragment", spiffe.RuleIDPathChar, leaf("spiffe://example.org/workload#x", nil)},
		{"SPIFFE-ID §2.1 empty trust domain", spiffe.RuleIDTrustDomain, leaf("spiffe:///workload", nil)},
		{"SPIFFE-ID §2.1 uppercase trust domain", spiffe.RuleIDTrustDomainChar, leaf("spiffe://Example.org/workload", nil)},
		{"SPIFFE-ID §2.1 port", spiffe.RuleIDTrustDomainChar, leaf("spiffe://example.org:8443/workload", nil)},
		{"SPIFFE-ID §2.1 userinfo", spiffe.RuleIDTrustDomainChar, leaf("spiffe://admin@example.org/workload", nil)},
		{"SPIFFE-ID §2.1 percent-encoded trust domain", nil, leaf("spiffe://ex%61mple.org/workload", nil)},
		{"SPIFFE-ID §2.2 empty segment", spiffe.RuleIDSegment, leaf("spiffe://example.org/a//workload", nil)},
		{"SPIFFE-ID §2.2 dot segment", spiffe.RuleIDSegment, leaf("spiffe://example.org/a/./workload", nil)},
		{"SPIFFE-ID §2.2 dot-dot segment", spiffe.RuleIDSegment, leaf("spiffe://example.org/a/../workload", nil)},
		{"SPIFFE-ID §2.2 trailing slash", spiffe.RuleIDTrailingSlash, leaf("spiffe://example.org/workload/", nil)},
		{"SPIFFE-ID §2.2 percent-encoded path", spiffe.RuleIDPathChar, leaf("spiffe://example.org/work%6Coad", nil)},
		{"SPIFFE-ID §2.2 path character", spiffe.RuleIDPathChar, leaf("spiffe://example.org/work$load", nil)},
		{"SPIFFE-ID §2.3 ID over 2048 bytes", spiffe.RuleIDLength, leaf("spiffe://example.org/"+strings.Repeat("a", 2048), nil)},
		{"SPIFFE-ID §2.3 trust domain over 255 bytes", spiffe.RuleIDLength, leaf("spiffe://"+strings.Repeat("a", 256)+"/workload", nil)},
		{"X509-SVID §2 no URI SAN", spiffe.RuleX509OneURISAN, leaf(goodURI, func(c *x509.Certificate) {
			c.ExtraExtensions = nil
			c.DNSNames = []string{"workload.example.org"}
		})},
		{"X509-SVID §2 two URI SANs", spiffe.RuleX509OneURISAN, leaf(goodURI, func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{spiffetest.URISANExtension(t, false, goodURI, "spiffe://example.org/other")}
		})},
		// The certificate that crashed writd serve: the trust domain's own
		// ID on a leaf.
		{"X509-SVID §3.1 leaf with root ID", spiffe.RuleX509LeafPath, leaf("spiffe://example.org", nil)},
		{"X509-SVID §3.1 empty subject, SAN not critical", spiffe.RuleX509SANCritical, leaf(goodURI, func(c *x509.Certificate) {
			c.Subject = pkix.Name{}
		})},
		{"X509-SVID §3.2 intermediate ID with a path", spiffe.RuleX509SigningID, viaIntermediate(func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{spiffetest.URISANExtension(t, false, "spiffe://example.org/ca")}
		})},
		{"X509-SVID §4.1 leaf is a CA", spiffe.RuleX509BasicConstraint, leaf(goodURI, func(c *x509.Certificate) { c.IsCA = true })},
		{"X509-SVID §4.1 leaf without basic constraints", spiffe.RuleX509BasicConstraint, leaf(goodURI, func(c *x509.Certificate) {
			c.BasicConstraintsValid = false
		})},
		{"X509-SVID §4.3 leaf without key usage", spiffe.RuleX509KeyUsage, leaf(goodURI, func(c *x509.Certificate) { c.KeyUsage = 0 })},
		{"X509-SVID §4.3 leaf key usage not critical", spiffe.RuleX509KeyUsage, leaf(goodURI, func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, spiffetest.KeyUsageExtension(t, x509.KeyUsageDigitalSignature, false))
		})},
		{"X509-SVID §4.3 leaf without digitalSignature", spiffe.RuleX509LeafKeyUsage, leaf(goodURI, func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageKeyAgreement
		})},
		{"X509-SVID §4.3 leaf with keyCertSign", spiffe.RuleX509LeafKeyUsage, leaf(goodURI, func(c *x509.Certificate) {
			c.KeyUsage |= x509.KeyUsageCertSign
		})},
		{"X509-SVID §4.3 leaf with cRLSign", spiffe.RuleX509LeafKeyUsage, leaf(goodURI, func(c *x509.Certificate) {
			c.KeyUsage |= x509.KeyUsageCRLSign
		})},
		{"X509-SVID §4.3 intermediate key usage not critical", spiffe.RuleX509KeyUsage, viaIntermediate(func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, spiffetest.KeyUsageExtension(t, x509.KeyUsageCertSign, false))
		})},
		{"X509-SVID §4.3 intermediate without keyCertSign", spiffe.RuleX509SigningKeyUsage, viaIntermediate(func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageDigitalSignature
		})},
		{"X509-SVID §4.4 leaf EKU without clientAuth", spiffe.RuleX509LeafEKU, leaf(goodURI, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		})},
		{"X509-SVID §4.4 leaf EKU without serverAuth", spiffe.RuleX509LeafEKU, leaf(goodURI, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		})},
		{"X509-SVID §5.1 signed outside the bundle", spiffe.RuleX509Chain, func(t *testing.T, _ *spiffetest.CA) tls.Certificate {
			return spiffetest.NewCA(t, testTD).Leaf(t, goodURI, nil)
		}},
		{"X509-SVID §5.1 expired (T25)", spiffe.RuleX509Chain, leaf(goodURI, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		})},
	}
}

// TestVerifyX509SVID_Rules mints one certificate per rule of the SPIFFE-ID
// and X509-SVID specifications and checks that VerifyX509SVID names that
// rule, and that a real TLS handshake with it fails while the server keeps
// serving (T25). A valid SVID from the same CA is accepted, alone and
// through an intermediate.
func TestVerifyX509SVID_Rules(t *testing.T) {
	t.Parallel()
	ca := spiffetest.NewCA(t, testTD)
	bundle := ca.Bundle()
	serverSrc := newMemSource(issue(t, newCA(t), serverID, devca.IssueOptions{}), bundle)
	ts := startServer(t, spiffe.ServerCredentials(serverSrc, tlsconfig.AuthorizeMemberOf(testTD)))

	for _, valid := range []struct {
		name string
		cert tls.Certificate
	}{
		{"valid leaf", ca.Leaf(t, goodURI, nil)},
		{"valid leaf through an intermediate", ca.Intermediate(t, nil).Leaf(t, goodURI, nil)},
		{"valid leaf with an empty subject and a critical SAN", ca.Leaf(t, goodURI, func(c *x509.Certificate) {
			c.Subject = pkix.Name{}
			c.ExtraExtensions = []pkix.Extension{spiffetest.URISANExtension(t, true, goodURI)}
		})},
		{"valid leaf with keyAgreement and no EKU", ca.Leaf(t, goodURI, func(c *x509.Certificate) {
			c.KeyUsage |= x509.KeyUsageKeyAgreement
			c.ExtKeyUsage = nil
		})},
	} {
		id, _, err := spiffe.VerifyX509SVID(valid.cert.Certificate, bundle, time.Time{})
		if err != nil || id.String() != goodURI {
			t.Errorf("%s: VerifyX509SVID() = %q, %v; want %q", valid.name, id, err, goodURI)
		}
		if err := check(t, ts.addr, rawTLSClient(valid.cert)); err != nil {
			t.Errorf("%s: handshake err = %v, want accepted", valid.name, err)
		}
	}
	handled := ts.handled.Load()

	for _, tt := range x509Cases(t) {
		t.Run(tt.name, func(t *testing.T) {
			cert := tt.mint(t, ca)
			_, _, err := spiffe.VerifyX509SVID(cert.Certificate, bundle, time.Time{})
			if !errors.Is(err, spiffe.ErrInvalidSVID) {
				t.Fatalf("VerifyX509SVID() err = %v, want ErrInvalidSVID", err)
			}
			if tt.rule != nil && !errors.Is(err, tt.rule) {
				t.Errorf("VerifyX509SVID() err = %v, want rule %q", err, tt.rule)
			}
			if err := check(t, ts.addr, rawTLSClient(cert)); err == nil {
				t.Errorf("handshake with the certificate succeeded, want it rejected")
			}
		})
	}
	if got := ts.handled.Load(); got != handled {
		t.Errorf("%d calls reached a handler with invalid SVIDs, want 0", got-handled)
	}
	// The server still serves after every rejection.
	if err := check(t, ts.addr, rawTLSClient(ca.Leaf(t, goodURI, nil))); err != nil {
		t.Errorf("handshake after the rejections err = %v, want accepted", err)
	}
}

// rawTLSClient returns credentials presenting cert as it is, trusting any
// server: the tests here are about what the server accepts.
func rawTLSClient(cert tls.Certificate) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // the server is not under test
}

// TestServerCredentials_RootIDLeafDoesNotCrash reproduces the crash of
// `writd serve` through a real TLS handshake: a leaf signed by the bundle
// whose SPIFFE ID is the trust domain's own ID. go-spiffe's x509svid
// accepted it, gRPC's TLS credentials then set no SPIFFE ID for a URI
// without a path, and go-spiffe's grpccredentials called String on that nil
// URL: a nil-pointer panic in the connection's goroutine, which no one
// recovered, so the process exited. ServerCredentials now rejects the leaf
// (X509-SVID §3.1) and never reads gRPC's SPIFFE ID.
func TestServerCredentials_RootIDLeafDoesNotCrash(t *testing.T) {
	t.Parallel()
	ca := spiffetest.NewCA(t, testTD)
	bundle := ca.Bundle()
	serverSrc := newMemSource(issue(t, newCA(t), serverID, devca.IssueOptions{}), bundle)
	rootLeaf := ca.Leaf(t, "spiffe://example.org", nil)

	t.Run("cause: go-spiffe's grpccredentials panics", func(t *testing.T) {
		creds := grpccredentials.MTLSServerCredentials(serverSrc, serverSrc, tlsconfig.AuthorizeMemberOf(testTD))
		panicked := handshakeOnce(t, creds, rawTLSClient(rootLeaf))
		if panicked == nil {
			t.Logf("go-spiffe no longer panics on a root-ID leaf; the guard in ServerCredentials stays")
		} else {
			t.Logf("go-spiffe panicked as expected: %v", panicked)
		}
	})
	t.Run("fix: ServerCredentials rejects it and keeps serving", func(t *testing.T) {
		ts := startServer(t, spiffe.ServerCredentials(serverSrc, tlsconfig.AuthorizeMemberOf(testTD)))
		if err := check(t, ts.addr, rawTLSClient(rootLeaf)); err == nil {
			t.Fatalf("handshake with a root-ID leaf succeeded, want rejected")
		}
		if err := check(t, ts.addr, rawTLSClient(ca.Leaf(t, goodURI, nil))); err != nil {
			t.Fatalf("next handshake err = %v, want accepted", err)
		}
		if ts.handled.Load() != 1 {
			t.Errorf("handled = %d, want 1", ts.handled.Load())
		}
	})
}

// handshakeOnce runs one server handshake of creds against a client using
// clientCreds on loopback and returns what the server side panicked with,
// if anything.
func handshakeOnce(t *testing.T, creds, clientCreds credentials.TransportCredentials) (panicked any) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		defer cancel()
		if conn, _, err := clientCreds.ClientHandshake(ctx, "localhost", c); err == nil {
			_, _ = conn.Read(make([]byte, 1)) // until the server closes
		}
	}()
	raw, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	defer func() { panicked = recover() }()
	if conn, _, err := creds.ServerHandshake(raw); err == nil {
		_ = conn.Close()
	}
	return nil
}

// panickySource is a Source whose bundle getter panics while armed, to
// prove a panic inside a handshake costs one connection and not the process.
type panickySource struct {
	*memSource
	armed atomic.Bool
}

func (s *panickySource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if s.armed.Load() {
		var m map[string]int
		//lint:ignore SA5000 a deliberate runtime panic
		m["boom"]++ // a nil-map write: a runtime panic like the original one
	}
	return s.memSource.GetX509BundleForTrustDomain(td)
}

// TestServerCredentials_RecoversHandshakePanic arms a bundle source to
// panic during certificate verification: that handshake fails, the panic
// handler hears of it, and the next handshake succeeds.
func TestServerCredentials_RecoversHandshakePanic(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	bundle := ca.Bundle()
	src := &panickySource{memSource: newMemSource(issue(t, ca, serverID, devca.IssueOptions{}), bundle)}
	var panics atomic.Int64
	var where atomic.Value
	ts := startServer(t, spiffe.ServerCredentials(src, tlsconfig.AuthorizeMemberOf(testTD),
		spiffe.WithPanicHandler(func(w string, _ any) { panics.Add(1); where.Store(w) })))
	client := spiffe.ClientCredentials(newMemSource(issue(t, ca, clientID, devca.IssueOptions{}), bundle), tlsconfig.AuthorizeID(serverID))

	src.armed.Store(true)
	if err := check(t, ts.addr, client); err == nil {
		t.Fatalf("handshake with a panicking verifier succeeded, want it failed")
	}
	if panics.Load() == 0 {
		t.Fatalf("panic handler was not called")
	}
	t.Logf("recovered a panic in %v", where.Load())
	src.armed.Store(false)
	if err := check(t, ts.addr, client); err != nil {
		t.Fatalf("handshake after the panic err = %v, want the server still serving", err)
	}
}
