package cli

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/proto/client"
)

func clientConfigFor(t *testing.T, ca *pki.CA, id pki.Identity) *client.Config {
	t.Helper()
	kp, _, err := ca.Issue(pki.IssueOptions{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := pki.NewBundle(ca)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	return &client.Config{Servers: []string{"127.0.0.1:7443"}, CertificateAuthorityData: enc(caPEM.PEM()),
		ClientCertificateData: enc(kp.CertPEM), ClientKeyData: enc(kp.KeyPEM)}
}

// ctl agent's node is the one its certificate names: --node-name may be
// left out, and a different --node-name is refused naming both; a config
// whose certificate is not a node's is refused.
func TestAgentNodeNameComesFromTheCertificate(t *testing.T) {
	ca, err := pki.CreateCA(pki.DefaultCAConfig())
	if err != nil {
		t.Fatal(err)
	}
	w1, _ := pki.NodeIdentity("w1")
	cc := clientConfigFor(t, ca, w1)
	for _, flag := range []string{"", "w1"} {
		if name, err := agentNodeName(cc, flag); err != nil || name != "w1" {
			t.Errorf("--node-name %q: got %q, %v; want w1", flag, name, err)
		}
	}
	_, err = agentNodeName(cc, "w2")
	if err == nil || !strings.Contains(err.Error(), `--node-name "w2"`) || !strings.Contains(err.Error(), `node "w1"`) {
		t.Errorf("--node-name w2 with a certificate for w1: got %v, want a refusal naming both", err)
	}
	if _, err := agentNodeName(clientConfigFor(t, ca, pki.AdminIdentity()), ""); err == nil || !strings.Contains(err.Error(), "not a node") {
		t.Errorf("an admin config: got %v, want a refusal (not a node)", err)
	}
}
