package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := CreateCA(DefaultCAConfig())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestCreateSaveLoadCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, created, err := LoadOrCreateCA(dir, DefaultCAConfig())
	if err != nil || !created {
		t.Fatalf("LoadOrCreateCA = %v, created=%v", err, created)
	}
	if ca.Cert.PublicKeyAlgorithm != x509.ECDSA || ca.Key.Curve != elliptic.P256() {
		t.Fatalf("CA key is %v %v, want ECDSA P-256", ca.Cert.PublicKeyAlgorithm, ca.Key.Curve.Params().Name)
	}
	for name, want := range map[string]os.FileMode{CAKeyFile: 0o600, CACertFile: 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	again, created, err := LoadOrCreateCA(dir, DefaultCAConfig())
	if err != nil || created {
		t.Fatalf("second LoadOrCreateCA = %v, created=%v (must load, never re-create)", err, created)
	}
	if again.Pin() != ca.Pin() || again.Key == nil || !again.Key.Equal(ca.Key) {
		t.Fatal("reloaded CA differs from the saved one")
	}
}

func TestLoadCAWithoutKeyVerifiesButCannotSign(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pub, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Key != nil || pub.Pin() != ca.Pin() {
		t.Fatal("verify-only CA must have no key and the same pin")
	}
	if _, _, err := pub.Issue(IssueOptions{Identity: AdminIdentity()}); !errors.Is(err, ErrNoCAKey) {
		t.Fatalf("Issue without key = %v, want ErrNoCAKey", err)
	}
}

func TestLoadCAErrors(t *testing.T) {
	if _, err := LoadCA(t.TempDir()); !errors.Is(err, ErrNoCA) {
		t.Fatalf("empty dir: %v, want ErrNoCA", err)
	}
	// A key left without its certificate must not be silently replaced.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateCA(dir, DefaultCAConfig()); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("key without cert: %v", err)
	}
	// Mismatched key.
	a, b := newTestCA(t), newTestCA(t)
	bk, _ := b.KeyPEM()
	if _, err := ParseCA(a.CertPEM, bk); !errors.Is(err, ErrBadPEM) || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, err := ParseCA([]byte("garbage"), nil); !errors.Is(err, ErrBadPEM) {
		t.Fatalf("garbage: %v", err)
	}
	// A leaf is not a CA.
	kp, _, err := a.Issue(IssueOptions{Identity: AdminIdentity()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(kp.CertPEM, nil); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("leaf as CA: %v", err)
	}
}

func TestPinIsSHA256OfSPKI(t *testing.T) {
	ca := newTestCA(t)
	pin := ca.Pin()
	if len(pin) != 64 {
		t.Fatalf("pin %q", pin)
	}
	// Re-issuing the CA certificate with the same key keeps the pin
	// (it hashes the key, not the certificate).
	tmpl := *ca.Cert
	tmpl.NotAfter = tmpl.NotAfter.Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &ca.Key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	re, _ := x509.ParseCertificate(der)
	if PinOf(re) != pin {
		t.Fatal("pin changed with the same key")
	}
	if newTestCA(t).Pin() == pin {
		t.Fatal("two CAs share a pin")
	}
}

func TestIssueNodeCertificate(t *testing.T) {
	ca := newTestCA(t)
	id, _ := NodeIdentity("w1")
	key, _ := NewKey()
	csrPEM, _ := NewCSR(key, "whatever-the-client-claims")
	csr, err := ParseCSRPEM(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	kp, cert, err := ca.SignCSR(csr, IssueOptions{Identity: id, Lifetime: time.Hour, Server: true, Hosts: []string{"10.1.2.3:7445", "w1.example.org", "::1"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := IdentityFromCert(cert)
	if err != nil || got != id {
		t.Fatalf("identity %+v %v, want %+v", got, err, id)
	}
	if cert.Subject.CommonName != "node:w1" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != GroupNodes {
		t.Fatalf("subject %v", cert.Subject)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life != time.Hour+clockSkew {
		t.Fatalf("lifetime %s", life)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "w1.example.org" || len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.ParseIP("10.1.2.3")) {
		t.Fatalf("SANs %v %v", cert.DNSNames, cert.IPAddresses)
	}
	opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSName: "w1.example.org"}
	if _, err := cert.Verify(opts); err != nil {
		t.Fatalf("server verify: %v", err)
	}
	opts.KeyUsages, opts.DNSName = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, ""
	if _, err := cert.Verify(opts); err != nil {
		t.Fatalf("client verify: %v", err)
	}
	if _, err := kp.TLS(); err == nil {
		t.Fatal("SignCSR pair has no key; TLS() must fail")
	}
}

func TestIssueUserCertificateIsClientOnly(t *testing.T) {
	ca := newTestCA(t)
	id, _ := UserIdentity("bob", RoleViewer)
	kp, cert, err := ca.Issue(IssueOptions{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kp.TLS(); err != nil {
		t.Fatal(err)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life != DefaultUserCertLifetime+clockSkew {
		t.Fatalf("default user lifetime %s", life)
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err == nil {
		t.Fatal("user certificate must not be valid for server auth")
	}
	dir := t.TempDir()
	if err := SaveKeyPair(dir, "bob", kp); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "bob.key"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode().Perm())
	}
	back, err := LoadKeyPair(dir, "bob")
	if err != nil || string(back.CertPEM) != string(kp.CertPEM) {
		t.Fatalf("LoadKeyPair: %v", err)
	}
}

func TestIssueCutsLifetimeToCA(t *testing.T) {
	ca, err := CreateCA(CAConfig{Lifetime: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, cert, err := ca.Issue(IssueOptions{Identity: AdminIdentity(), Lifetime: 100 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Fatalf("leaf outlives CA: %s > %s", cert.NotAfter, ca.Cert.NotAfter)
	}
	ca.SetClock(func() time.Time { return time.Now().Add(3 * time.Hour) })
	if _, _, err := ca.Issue(IssueOptions{Identity: AdminIdentity()}); err == nil || !strings.Contains(err.Error(), "CA expired") {
		t.Fatalf("expired CA: %v", err)
	}
}

func TestSignCSRRefusesBadInput(t *testing.T) {
	ca := newTestCA(t)
	id, _ := NodeIdentity("w1")
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, weak)
	csr, _ := x509.ParseCertificateRequest(der)
	if _, _, err := ca.SignCSR(csr, IssueOptions{Identity: id}); !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), "1024 bits") {
		t.Fatalf("weak RSA: %v", err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	der, _ = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, p224)
	csr, _ = x509.ParseCertificateRequest(der)
	if _, _, err := ca.SignCSR(csr, IssueOptions{Identity: id}); !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), "P-224") {
		t.Fatalf("P-224: %v", err)
	}
	key, _ := NewKey()
	csrPEM, _ := NewCSR(key, "x")
	csrPEM[len(csrPEM)/2] ^= 1 // corrupt
	if _, err := ParseCSRPEM(csrPEM); !errors.Is(err, ErrBadCSR) {
		t.Fatalf("corrupt CSR: %v", err)
	}
	if _, err := ParseCSRPEM(ca.CertPEM); !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), "CERTIFICATE REQUEST") {
		t.Fatalf("certificate as CSR: %v", err)
	}
	if _, _, err := ca.Issue(IssueOptions{Identity: id, Hosts: []string{"Bad_Host"}}); err == nil || !strings.Contains(err.Error(), "Bad_Host") {
		t.Fatalf("bad SAN: %v", err)
	}
	if _, _, err := ca.Issue(IssueOptions{Identity: Identity{User: "root", Role: RoleAdmin}}); !errors.Is(err, ErrBadIdentity) {
		t.Fatalf("bad identity: %v", err)
	}
}
