package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func testCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// A pod's environment and service account files make a config that
// verifies the server against ca.crt, presents no certificate and sends
// the token file's current content as a bearer token; without them it is
// ErrNotInCluster.
func TestInClusterConfig(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	getenv := func(k string) string { return env[k] }
	if _, err := inClusterConfig(dir, getenv); !errors.Is(err, ErrNotInCluster) {
		t.Fatalf("no files: %v, want ErrNotInCluster", err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "token"), []byte("tok-1\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "ca.crt"), testCAPEM(t), 0o644))
	must(os.WriteFile(filepath.Join(dir, "namespace"), []byte("team-a"), 0o644))
	if _, err := inClusterConfig(dir, func(string) string { return "" }); !errors.Is(err, ErrNotInCluster) {
		t.Fatalf("no environment: %v, want ErrNotInCluster", err)
	}
	cfg, err := inClusterConfig(dir, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Servers) != 1 || cfg.Servers[0] != "10.96.0.1:443" || cfg.Namespace != "team-a" {
		t.Fatalf("config %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	tc, err := cfg.TLS()
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificates) != 0 || tc.RootCAs == nil {
		t.Fatalf("TLS: %d certificates, roots %v; want none and the CA", len(tc.Certificates), tc.RootCAs)
	}
	creds := tokenFileCreds(cfg.tokenPath())
	md, err := creds.GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer tok-1" {
		t.Fatalf("metadata %v %v", md, err)
	}
	must(os.WriteFile(filepath.Join(dir, "token"), []byte("tok-2"), 0o644))
	if md, _ := creds.GetRequestMetadata(context.Background()); md["authorization"] != "Bearer tok-2" {
		t.Fatalf("after rotation: %v, want the new token", md)
	}
	must(os.WriteFile(filepath.Join(dir, "token"), nil, 0o644))
	if _, err := creds.GetRequestMetadata(context.Background()); err == nil {
		t.Fatal("an empty token file was sent")
	}
	// A config without token-file still needs a certificate.
	if err := (&Config{Servers: []string{"a:1"}, CertificateAuthority: "ca.crt"}).Validate(); err == nil {
		t.Fatal("config with neither certificate nor token validated")
	}
}
