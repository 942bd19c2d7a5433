package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigRoundTripAndStrictness(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	c := &Config{Servers: []string{"10.0.0.1:7443", "10.0.0.2:7443"}, CertificateAuthority: "ca.crt",
		ClientCertificate: "admin.crt", ClientKey: "admin.key", Namespace: "shop"}
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Servers, ",") != "10.0.0.1:7443,10.0.0.2:7443" || got.Namespace != "shop" || got.ClientKey != "admin.key" {
		t.Fatalf("round trip: %+v", got)
	}
	// Relative material paths resolve against the config's directory.
	if _, err := got.TLS(); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "ca.crt")) {
		t.Fatalf("missing CA file: %v", err)
	}
	os.WriteFile(path, []byte("servers: [a:1]\ncertificate-authority: ca\nclient-certificate: c\nclient-key: k\nsevers: [x]\n"), 0o600)
	if _, err := LoadConfig(path); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "severs") {
		t.Fatalf("unknown key: %v", err)
	}
	os.WriteFile(path, []byte("certificate-authority: ca\n"), 0o600)
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "servers") {
		t.Fatalf("no servers: %v", err)
	}
}
