package node

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/controlplane/pki"
)

// TestCertRecordsNameTheIssuerAndPrune: a record names the trusted CA that
// signed the certificate, and the prune drops only expired ones.
func TestCertRecordsNameTheIssuerAndPrune(t *testing.T) {
	c := consensustest.Start(t, 1, nil)
	s := c.MustLeader(t).Store()
	oldCA := must(pki.CreateCA(pki.DefaultCAConfig()))
	newCA := must(pki.CreateCA(pki.DefaultCAConfig()))
	bundle := must(pki.NewBundle(newCA, oldCA.Cert))
	ctx := context.Background()
	_, live, err := oldCA.Issue(pki.IssueOptions{Identity: must(pki.NodeIdentity("w1"))})
	if err != nil {
		t.Fatal(err)
	}
	_, short, err := newCA.Issue(pki.IssueOptions{Identity: must(pki.NodeIdentity("w2")), Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, cert := range []*x509.Certificate{live, short} {
		if err := recordCert(ctx, s, bundle, cert); err != nil {
			t.Fatal(err)
		}
	}
	read := func(id string) (certRecord, bool) {
		kv, _, err := s.Get(ctx, []byte(certsPrefix+id))
		if err != nil {
			t.Fatal(err)
		}
		if kv == nil {
			return certRecord{}, false
		}
		var r certRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			t.Fatal(err)
		}
		return r, true
	}
	if r, _ := read("node:w1"); r.IssuerPin != oldCA.Pin() {
		t.Fatalf("w1's record names issuer %s, want the old CA %s", r.IssuerPin, oldCA.Pin())
	}
	if r, _ := read("node:w2"); r.IssuerPin != newCA.Pin() {
		t.Fatalf("w2's record names issuer %s, want the new CA %s", r.IssuerPin, newCA.Pin())
	}
	n, err := pruneCertRecords(ctx, s, time.Now().Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("prune an hour later = %d, %v; want 1 (w2's one-minute certificate)", n, err)
	}
	if _, ok := read("node:w2"); ok {
		t.Fatal("w2's expired record was kept")
	}
	if _, ok := read("node:w1"); !ok {
		t.Fatal("w1's live record was pruned")
	}
}
