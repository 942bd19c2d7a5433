package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const twoContexts = `current-context: a
contexts:
- name: a
  servers: [127.0.0.1:1]
  certificate-authority: ca.crt
  client-certificate: a.crt
  client-key: a.key
- name: b
  servers: [127.0.0.1:2]
  certificate-authority-data: Zm9v
  client-certificate-data: Zm9v
  client-key-data: Zm9v
  namespace: lab
`

// A context loads as a one-cluster config; saving it (a renewal, new
// servers) rewrites only that context.
func TestContextsLoadAndSaveBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := LoadConfig(path)
	if err != nil || a.Servers[0] != "127.0.0.1:1" || a.ContextName() != "a" {
		t.Fatalf("current context: %+v, %v", a, err)
	}
	b, err := LoadConfigContext(path, "b")
	if err != nil || b.Namespace != "lab" {
		t.Fatalf("context b: %+v, %v", b, err)
	}
	b.Servers = []string{"127.0.0.1:3"}
	if err := b.Save(path); err != nil {
		t.Fatal(err)
	}
	again, err := LoadConfigContext(path, "b")
	if err != nil || again.Servers[0] != "127.0.0.1:3" {
		t.Fatalf("context b after save: %+v, %v", again, err)
	}
	if a2, err := LoadConfig(path); err != nil || a2.Servers[0] != "127.0.0.1:1" || a2.ClientKey != "a.key" {
		t.Fatalf("context a after saving b: %+v, %v", a2, err)
	}
	if _, err := LoadConfigContext(path, "c"); err == nil || !strings.Contains(err.Error(), `no context "c" (contexts: a, b)`) {
		t.Fatalf("missing context: %v", err)
	}
	bad := strings.Replace(twoContexts, "current-context: a\n", "current-context: a\nservers: [x:1]\n", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "not at the top") {
		t.Fatalf("servers beside contexts: %v", err)
	}
}
