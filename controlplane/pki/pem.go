package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemECKey       = "EC PRIVATE KEY"
	pemCSR         = "CERTIFICATE REQUEST"
)

func encodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der})
}

// ParseCertificatesPEM parses every CERTIFICATE block in b (at least one).
func ParseCertificatesPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemCertificate {
			return nil, fmt.Errorf("%w: block %d is %q, want %q", ErrBadPEM, len(out)+1, block.Type, pemCertificate)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %w", ErrBadPEM, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no CERTIFICATE block found", ErrBadPEM)
	}
	return out, nil
}

// EncodeECPrivateKeyPEM encodes key as an "EC PRIVATE KEY" block.
func EncodeECPrivateKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemECKey, Bytes: der}), nil
}

// ParseECPrivateKeyPEM parses an "EC PRIVATE KEY" (SEC 1) or PKCS #8 ECDSA
// key.
func ParseECPrivateKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block in key", ErrBadPEM)
	}
	switch block.Type {
	case pemECKey:
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: EC key: %w", ErrBadPEM, err)
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PKCS #8 key: %w", ErrBadPEM, err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: key is %T, want ECDSA", ErrBadPEM, k)
		}
		return ek, nil
	}
	return nil, fmt.Errorf("%w: key block is %q, want %q", ErrBadPEM, block.Type, pemECKey)
}

// NewKey generates an ECDSA P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// NewCSR makes a PEM certificate request for key. The subject is only a
// hint: the CA decides the identity and SANs.
func NewCSR(key crypto.Signer, commonName string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkixName(commonName)}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

// ParseCSRPEM parses a PEM certificate request and checks its signature
// (proof that the requester holds the key).
func ParseCSRPEM(b []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrBadCSR)
	}
	if block.Type != pemCSR {
		return nil, fmt.Errorf("%w: block is %q, want %q", ErrBadCSR, block.Type, pemCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	return csr, nil
}

// KeyPair is a certificate with its key, both PEM.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// TLS parses the pair into a tls.Certificate (with Leaf set).
func (kp KeyPair) TLS() (tls.Certificate, error) {
	c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: key pair: %w", ErrBadPEM, err)
	}
	return c, nil
}

// SaveKeyPair writes <name>.crt (0644) and <name>.key (0600) into dir.
func SaveKeyPair(dir, name string, kp KeyPair) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, name+".key"), kp.KeyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, name+".crt"), kp.CertPEM, 0o644)
}

// LoadKeyPair reads <name>.crt and <name>.key from dir.
func LoadKeyPair(dir, name string) (KeyPair, error) {
	c, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return KeyPair{}, fmt.Errorf("read certificate: %w", err)
	}
	k, err := os.ReadFile(filepath.Join(dir, name+".key"))
	if err != nil {
		return KeyPair{}, fmt.Errorf("read key: %w", err)
	}
	return KeyPair{CertPEM: c, KeyPEM: k}, nil
}

// WriteFileAtomic writes data to a temporary file in the same directory
// with mode perm, syncs it and renames it over path, so a crash leaves the
// old or the new content, never half of one.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SplitHosts sorts SAN entries into IP addresses and DNS names. Entries may
// be host:port (the port is dropped). Empty entries are an error.
func SplitHosts(hosts []string) (dns []string, ips []net.IP, err error) {
	for _, h := range hosts {
		host := h
		if hp, _, splitErr := net.SplitHostPort(h); splitErr == nil {
			host = hp
		}
		if host == "" {
			return nil, nil, fmt.Errorf("%w: empty host in address %q", ErrBadCSR, h)
		}
		if ip := net.ParseIP(host); ip != nil {
			ips = appendIP(ips, ip)
			continue
		}
		if err := checkName("DNS name", host); err != nil {
			return nil, nil, fmt.Errorf("address %q: %w", h, err)
		}
		dns = appendUnique(dns, host)
	}
	return dns, ips, nil
}

func appendIP(ips []net.IP, ip net.IP) []net.IP {
	for _, x := range ips {
		if x.Equal(ip) {
			return ips
		}
	}
	return append(ips, ip)
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
