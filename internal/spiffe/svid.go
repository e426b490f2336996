package spiffe

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// MaxChainLen is the most certificates a peer may present in a handshake.
// SPIRE sends a leaf and at most a few intermediates; a longer chain is
// refused before any of it is verified.
const MaxChainLen = 8

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 37}
	// emptyName is the DER of an empty X.501 Name.
	emptyName = []byte{0x30, 0x00}
)

// VerifyX509SVID verifies raw, a peer's certificate chain with the leaf
// first, as an X509-SVID: every rule of the SPIFFE-ID and X509-SVID
// specifications (see Rule) on the leaf and on every signing certificate,
// then RFC 5280 path validation against bundles (go-spiffe's x509svid.Verify
// with crypto/x509) at now, or the current time if now is zero. It returns
// the leaf's SPIFFE ID and the verified chains. Errors wrap ErrInvalidSVID
// and, where one was broken, the Rule.
//
// The rules are checked on the certificate's own bytes: the URI SAN as
// written (not as net/url re-encodes it), the key usage extension's
// criticality, the presence of basic constraints.
func VerifyX509SVID(raw [][]byte, bundles x509bundle.Source, now time.Time) (spiffeid.ID, [][]*x509.Certificate, error) {
	switch {
	case len(raw) == 0:
		return spiffeid.ID{}, nil, fmt.Errorf("spiffe: no certificate presented: %w", ErrInvalidSVID)
	case len(raw) > MaxChainLen:
		return spiffeid.ID{}, nil, fmt.Errorf("spiffe: chain of %d certificates exceeds %d: %w", len(raw), MaxChainLen, ErrInvalidSVID)
	case bundles == nil:
		return spiffeid.ID{}, nil, fmt.Errorf("spiffe: no trust bundle: %w", ErrInvalidSVID)
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return spiffeid.ID{}, nil, fmt.Errorf("spiffe: certificate %d: %w: %w", i, ErrInvalidSVID, err)
		}
		certs = append(certs, c)
	}
	id, err := checkLeaf(certs[0])
	if err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("spiffe: leaf: %w: %w", ErrInvalidSVID, err)
	}
	for i, c := range certs[1:] {
		if err := checkSigning(c); err != nil {
			return spiffeid.ID{}, nil, fmt.Errorf("spiffe: intermediate %d: %w: %w", i+1, ErrInvalidSVID, err)
		}
	}
	var opts []x509svid.VerifyOption
	if !now.IsZero() {
		opts = append(opts, x509svid.WithTime(now))
	}
	verifiedID, chains, err := x509svid.Verify(certs, bundles, opts...)
	if err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("spiffe: %w: %w: %w", ErrInvalidSVID, RuleX509Chain, err)
	}
	if verifiedID != id {
		// Both parsed the same SAN; a difference is a bug, so fail closed.
		return spiffeid.ID{}, nil, fmt.Errorf("spiffe: leaf ID %q parsed as %q by go-spiffe: %w", id, verifiedID, ErrInvalidSVID)
	}
	for _, chain := range chains {
		// chain[0] is the leaf; the rest, up to the trust anchor, sign.
		for _, c := range chain[1:] {
			if err := checkSigning(c); err != nil {
				return spiffeid.ID{}, nil, fmt.Errorf("spiffe: signing certificate %q: %w: %w", c.Subject.String(), ErrInvalidSVID, err)
			}
		}
	}
	return id, chains, nil
}

// checkLeaf checks the rules for a leaf X509-SVID and returns its ID.
func checkLeaf(c *x509.Certificate) (spiffeid.ID, error) {
	uris, sanCritical, err := uriSANs(c)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if len(uris) != 1 || len(c.URIs) != 1 {
		return spiffeid.ID{}, broke(RuleX509OneURISAN, "%d URI SANs", len(uris))
	}
	id, err := ParseWorkloadID(uris[0], RuleX509LeafPath)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if bytes.Equal(c.RawSubject, emptyName) && !sanCritical {
		return spiffeid.ID{}, broke(RuleX509SANCritical, "")
	}
	if !c.BasicConstraintsValid || c.IsCA {
		return spiffeid.ID{}, broke(RuleX509BasicConstraint, "leaf: present=%t cA=%t", c.BasicConstraintsValid, c.IsCA)
	}
	if err := checkKeyUsageExtension(c); err != nil {
		return spiffeid.ID{}, err
	}
	switch {
	case c.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return spiffeid.ID{}, broke(RuleX509LeafKeyUsage, "digitalSignature not set")
	case c.KeyUsage&x509.KeyUsageCertSign != 0:
		return spiffeid.ID{}, broke(RuleX509LeafKeyUsage, "keyCertSign set")
	case c.KeyUsage&x509.KeyUsageCRLSign != 0:
		return spiffeid.ID{}, broke(RuleX509LeafKeyUsage, "cRLSign set")
	}
	if hasExtension(c, oidExtKeyUsage) &&
		(!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)) {
		return spiffeid.ID{}, broke(RuleX509LeafEKU, "")
	}
	return id, nil
}

// checkSigning checks the rules for a signing (CA) certificate.
func checkSigning(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return broke(RuleX509BasicConstraint, "signing certificate: present=%t cA=%t", c.BasicConstraintsValid, c.IsCA)
	}
	if err := checkKeyUsageExtension(c); err != nil {
		return err
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return broke(RuleX509SigningKeyUsage, "")
	}
	uris, _, err := uriSANs(c)
	if err != nil {
		return err
	}
	switch {
	case len(uris) == 0: // a signing certificate SHOULD be an SVID; it need not be
	case len(uris) > 1:
		return broke(RuleX509OneURISAN, "signing certificate with %d URI SANs", len(uris))
	default:
		id, err := ParseID(uris[0])
		if err != nil {
			return err
		}
		if id.Path() != "" {
			return broke(RuleX509SigningID, "%q", uris[0])
		}
	}
	return nil
}

func checkKeyUsageExtension(c *x509.Certificate) error {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidKeyUsage) {
			if !e.Critical {
				return broke(RuleX509KeyUsage, "not critical")
			}
			return nil
		}
	}
	return broke(RuleX509KeyUsage, "absent")
}

func hasExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}

var errBadSAN = errors.New("malformed subject alternative name extension")

// uriSANs returns the URI SANs of c exactly as written in the certificate,
// and whether the extension is critical.
func uriSANs(c *x509.Certificate) (uris []string, critical bool, err error) {
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		rest, err := asn1.Unmarshal(e.Value, &seq)
		if err != nil || len(rest) != 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return nil, false, errBadSAN
		}
		names := seq.Bytes
		for len(names) > 0 {
			var name asn1.RawValue
			if names, err = asn1.Unmarshal(names, &name); err != nil {
				return nil, false, errBadSAN
			}
			if name.Class == asn1.ClassContextSpecific && name.Tag == 6 { // uniformResourceIdentifier
				uris = append(uris, string(name.Bytes))
			}
		}
		return uris, e.Critical, nil
	}
	return nil, false, nil
}
