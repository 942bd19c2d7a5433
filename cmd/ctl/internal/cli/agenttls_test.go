package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	"github.com/skiffhq/skiff/proto/client"
)

// serialServer is testutil.SerialServer serving a control certificate
// from ca.
func serialServer(t *testing.T, ca *pki.CA, clientCAs *x509.CertPool) string {
	t.Helper()
	id, _ := pki.ControlIdentity("c1")
	kp, _, err := ca.Issue(pki.IssueOptions{Identity: id, Server: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return testutil.SerialServer(t, cert, clientCAs)
}

// writeNodeFiles writes what a worker keeps for node.conf: its key pair
// and the CAs it trusts (caPEM), and returns the new certificate's serial.
func writeNodeFiles(t *testing.T, dir string, ca *pki.CA, caPEM []byte) string {
	t.Helper()
	id, _ := pki.NodeIdentity("w1")
	kp, leaf, err := ca.Issue(pki.IssueOptions{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"node.crt": kp.CertPEM, "node.key": kp.KeyPEM, "ca.crt": caPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return leaf.SerialNumber.String()
}

// An agent run alone on node.conf (ctl agent) presents, at each new
// handshake, the certificate the worker process last wrote, and trusts the
// CAs it last wrote: a renewal or a CA rotation needs no agent restart.
func TestAgentAloneRereadsNodeConfFiles(t *testing.T) {
	dir := t.TempDir()
	ca1, err := pki.CreateCA(pki.DefaultCAConfig())
	if err != nil {
		t.Fatal(err)
	}
	b1, err := pki.NewBundle(ca1)
	if err != nil {
		t.Fatal(err)
	}
	first := writeNodeFiles(t, dir, ca1, b1.PEM())
	conf := filepath.Join(dir, "node.conf")
	if err := (&client.Config{Servers: []string{"127.0.0.1:1"}, CertificateAuthority: "ca.crt",
		ClientCertificate: "node.crt", ClientKey: "node.key"}).Save(conf); err != nil {
		t.Fatal(err)
	}
	cc, err := client.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := newRereadTLS(cc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := rt.Config()

	addr1 := serialServer(t, ca1, ca1.Pool())
	if got, err := testutil.DialSerial(addr1, cfg); err != nil || got != first {
		t.Fatalf("first handshake: serial %q, %v; want %s", got, err, first)
	}
	renewed := writeNodeFiles(t, dir, ca1, b1.PEM())
	if got, err := testutil.DialSerial(addr1, cfg); err != nil || got != renewed {
		t.Fatalf("after the worker renewed: serial %q, %v; want the renewed %s", got, err, renewed)
	}

	// A control node serving with a new CA's certificate: refused until
	// the worker writes the CAs with the new one, then accepted.
	ca2, err := pki.CreateCA(pki.DefaultCAConfig())
	if err != nil {
		t.Fatal(err)
	}
	addr2 := serialServer(t, ca2, ca1.Pool())
	var verr *tls.CertificateVerificationError
	if _, err := testutil.DialSerial(addr2, cfg); !errors.As(err, &verr) {
		t.Fatalf("a server of an unknown CA: got %v, want a certificate verification error", err)
	}
	b2, err := pki.NewBundle(ca2, ca1.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), b2.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := testutil.DialSerial(addr2, cfg); err != nil || got != renewed {
		t.Fatalf("after the worker trusted the new CA: serial %q, %v; want %s", got, err, renewed)
	}

	// A half-written file: the last good read stays in use.
	if err := os.WriteFile(filepath.Join(dir, "node.crt"), []byte("-----BEGIN CERT"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := testutil.DialSerial(addr2, cfg); err != nil || got != renewed {
		t.Fatalf("with a broken certificate file: serial %q, %v; want the last good %s", got, err, renewed)
	}
}
