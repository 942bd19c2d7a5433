package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names inside a PKI directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Sentinel errors.
var (
	// ErrNoCA means the directory holds no CA (neither file exists).
	ErrNoCA = errors.New("no cluster CA")
	// ErrBadPEM means PEM input could not be decoded or parsed.
	ErrBadPEM = errors.New("invalid PEM")
	// ErrBadCSR means a certificate signing request was refused.
	ErrBadCSR = errors.New("invalid certificate signing request")
)

// clockSkew backdates NotBefore so that a machine whose clock is a little
// behind accepts a certificate issued a moment ago.
const clockSkew = 5 * time.Minute

// CA is the cluster certificate authority. When it was loaded without its
// key (a worker node), it can verify but not sign.
type CA struct {
	Cert *x509.Certificate
	// Key is nil on nodes that do not sign.
	Key *ecdsa.PrivateKey
	// CertPEM is Cert in PEM, as shipped to joining nodes.
	CertPEM []byte
	now     func() time.Time
}

// CAConfig configures CreateCA.
type CAConfig struct {
	// CommonName of the CA subject.
	CommonName string
	// Lifetime of the CA certificate.
	Lifetime time.Duration
	// Now is the clock (tests may fix it); nil means time.Now.
	Now func() time.Time
}

// DefaultCAConfig returns a ten-year CA named "skiff cluster CA".
func DefaultCAConfig() CAConfig {
	return CAConfig{CommonName: "skiff cluster CA", Lifetime: 10 * 365 * 24 * time.Hour, Now: time.Now}
}

// CreateCA makes a new CA with a fresh ECDSA P-256 key.
func CreateCA(cfg CAConfig) (*CA, error) {
	def := DefaultCAConfig()
	if cfg.CommonName == "" {
		cfg.CommonName = def.CommonName
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = def.Lifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cfg.CommonName, Organization: []string{"skiff"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(cfg.Lifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCertPEM(der), now: cfg.Now}, nil
}

// ParseCA builds a CA from PEM. keyPEM may be nil for a verify-only CA; if
// given, it must match the certificate.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := ParseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: certificate %q is not a CA (basic constraints)", ErrBadPEM, cert.Subject.CommonName)
	}
	ca := &CA{Cert: cert, CertPEM: encodeCertPEM(cert.Raw), now: time.Now}
	if keyPEM == nil {
		return ca, nil
	}
	key, err := ParseECPrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: CA key does not match the CA certificate %q", ErrBadPEM, cert.Subject.CommonName)
	}
	ca.Key = key
	return ca, nil
}

// LoadCA reads ca.crt and (if present) ca.key from dir. It returns ErrNoCA
// when ca.crt does not exist.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoCA, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		keyPEM = nil
	} else if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w", dir, err)
	}
	return ca, nil
}

// LoadOrCreateCA loads the CA in dir, or creates and saves one when dir has
// none. A restarted `ctl init` thus keeps its CA.
func LoadOrCreateCA(dir string, cfg CAConfig) (ca *CA, created bool, err error) {
	ca, err = LoadCA(dir)
	if err == nil {
		return ca, false, nil
	}
	if !errors.Is(err, ErrNoCA) {
		return nil, false, err
	}
	if _, statErr := os.Stat(filepath.Join(dir, CAKeyFile)); statErr == nil {
		return nil, false, fmt.Errorf("%s exists without %s in %s: refusing to replace the CA key", CAKeyFile, CACertFile, dir)
	}
	ca, err = CreateCA(cfg)
	if err != nil {
		return nil, false, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// Save writes ca.crt (0644) and, if the CA has its key, ca.key (0600) into
// dir (created 0700). Files are written atomically.
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create PKI dir: %w", err)
	}
	if ca.Key != nil {
		keyPEM, err := EncodeECPrivateKeyPEM(ca.Key)
		if err != nil {
			return err
		}
		if err := WriteFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
			return err
		}
	}
	return WriteFileAtomic(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644)
}

// KeyPEM is the CA key in PEM (for shipping to a joining control node).
func (ca *CA) KeyPEM() ([]byte, error) {
	if ca.Key == nil {
		return nil, errors.New("CA key is not on this node")
	}
	return EncodeECPrivateKeyPEM(ca.Key)
}

// Pin is the hash of the CA's public key that join tokens carry.
func (ca *CA) Pin() string { return PinOf(ca.Cert) }

// Pool is a cert pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PinOf is the lower-case hex SHA-256 of cert's DER SubjectPublicKeyInfo,
// the same value as kubeadm's discovery-token-ca-cert-hash (without its
// "sha256:" prefix).
func PinOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

func (ca *CA) clock() time.Time {
	if ca.now == nil {
		return time.Now()
	}
	return ca.now()
}

// SetClock replaces the CA's clock (tests).
func (ca *CA) SetClock(now func() time.Time) { ca.now = now }

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
