package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"
)

// Default certificate lifetimes. Node certificates are short and renewed
// by the Renewer at 2/3 of their life; user certificates live in client
// config files that people copy around, so they last longer, and are
// renewed by their holder (`ctl user renew`) before they expire.
const (
	DefaultNodeCertLifetime = 30 * 24 * time.Hour
	DefaultUserCertLifetime = 90 * 24 * time.Hour
)

// ErrNoCAKey means signing was asked of a CA loaded without its key.
var ErrNoCAKey = errors.New("this node does not hold the CA key")

// IssueOptions describe a certificate to issue.
type IssueOptions struct {
	Identity Identity
	// Lifetime from now; zero means the default for the role. It is cut
	// to the CA's own expiry.
	Lifetime time.Duration
	// Server adds server authentication (control nodes serve the API and
	// the store port; a worker its stream port, at its own address only);
	// every certificate is valid for client authentication. User
	// certificates never get it.
	Server bool
	// Hosts are the SANs: IP addresses or DNS names (host:port accepted).
	Hosts []string
}

// SignCSR issues a certificate for the CSR's public key. The CSR's own
// subject and SANs are ignored: identity and SANs come from opts.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, opts IssueOptions) (KeyPair, *x509.Certificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return KeyPair{}, nil, fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return KeyPair{}, nil, err
	}
	der, cert, err := ca.sign(csr.PublicKey, opts)
	if err != nil {
		return KeyPair{}, nil, err
	}
	return KeyPair{CertPEM: encodeCertPEM(der)}, cert, nil
}

// Issue generates a key here and issues a certificate for it (used by
// `ctl init` for its own certificates and by `ctl user create`).
func (ca *CA) Issue(opts IssueOptions) (KeyPair, *x509.Certificate, error) {
	key, err := NewKey()
	if err != nil {
		return KeyPair{}, nil, err
	}
	der, cert, err := ca.sign(&key.PublicKey, opts)
	if err != nil {
		return KeyPair{}, nil, err
	}
	keyPEM, err := EncodeECPrivateKeyPEM(key)
	if err != nil {
		return KeyPair{}, nil, err
	}
	return KeyPair{CertPEM: encodeCertPEM(der), KeyPEM: keyPEM}, cert, nil
}

func (ca *CA) sign(pub any, opts IssueOptions) ([]byte, *x509.Certificate, error) {
	if ca.Key == nil {
		return nil, nil, ErrNoCAKey
	}
	id := opts.Identity
	if _, err := identityFromSubject(id.Subject()); err != nil {
		return nil, nil, fmt.Errorf("issue certificate: %w", err)
	}
	lifetime := opts.Lifetime
	if lifetime <= 0 {
		lifetime = DefaultUserCertLifetime
		if id.Role == RoleNode || id.Role == RoleControl {
			lifetime = DefaultNodeCertLifetime
		}
	}
	dns, ips, err := SplitHosts(opts.Hosts)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: %w", id.User, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := ca.clock()
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("issue certificate for %s: the CA expired at %s", id.User, ca.Cert.NotAfter.Format(time.RFC3339))
	}
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if opts.Server {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               id.Subject(),
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %s: %w", id.User, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	return der, cert, nil
}

// HostsOf returns a certificate's SANs as strings (for renewal with the
// same addresses).
func HostsOf(cert *x509.Certificate) []string {
	out := append([]string(nil), cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA curve %s; use P-256 or P-384", ErrBadCSR, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA key of %d bits; use at least 2048", ErrBadCSR, k.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("%w: unsupported public key type %T", ErrBadCSR, pub)
	}
	return nil
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }
