package pki

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

func TestDenyListCoversCertificatesIssuedUntilTheRevocation(t *testing.T) {
	ca := newTestCA(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	issueAt := func(at time.Time, id Identity) *x509.Certificate {
		ca.SetClock(func() time.Time { return at })
		_, cert, err := ca.Issue(IssueOptions{Identity: id})
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	bob, _ := UserIdentity("bob", RoleViewer)
	carol, _ := UserIdentity("carol", RoleViewer)
	old := issueAt(t0, bob)                                               // the first certificate
	renewed := issueAt(t0.Add(24*time.Hour), bob)                         // another one, serial unknown to the revoker
	sameSecond := issueAt(t0.Add(48*time.Hour+300*time.Millisecond), bob) // in the second of the revocation
	later := issueAt(t0.Add(48*time.Hour+time.Second), bob)               // bob created again afterwards
	other := issueAt(t0, carol)

	var d DenyList
	for _, c := range []*x509.Certificate{old, renewed, later, other} {
		if err := d.Check(c); err != nil {
			t.Fatalf("empty list refused %s: %v", c.Subject.CommonName, err)
		}
	}
	revokedAt := t0.Add(48*time.Hour + 500*time.Millisecond)
	d.Replace([]Revocation{
		{Identity: "user:bob", RevokedAt: t0.Add(-time.Hour)}, // an older record of the same identity loses
		{Identity: "user:bob", RevokedAt: revokedAt, Reason: "laptop lost"},
	})
	for name, c := range map[string]*x509.Certificate{"first": old, "renewed": renewed, "same second": sameSecond} {
		if err := d.Check(c); !errors.Is(err, ErrRevoked) {
			t.Errorf("%s certificate of bob: %v, want ErrRevoked", name, err)
		}
	}
	if err := d.Check(later); err != nil {
		t.Errorf("bob's certificate issued after the revocation: %v", err)
	}
	if err := d.Check(other); err != nil {
		t.Errorf("carol: %v", err)
	}
	if d.Len() != 1 {
		t.Errorf("Len %d, want 1", d.Len())
	}
}

func TestRevocationExpiryIsTheLastCAsExpiry(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	if got := RevocationExpiry(nil, now); !got.Equal(now) {
		t.Errorf("no CA: %v", got)
	}
	if got := RevocationExpiry([]*x509.Certificate{ca.Cert}, now); !got.Equal(ca.Cert.NotAfter) {
		t.Errorf("expiry %v, want the CA's %v", got, ca.Cert.NotAfter)
	}
}
