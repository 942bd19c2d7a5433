package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
)

func TestIdentityRoundTrip(t *testing.T) {
	mk := func(id Identity, err error) Identity {
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for _, id := range []Identity{
		AdminIdentity(),
		mk(UserIdentity("alice", RoleAdmin)),
		mk(UserIdentity("bob", RoleViewer)),
		mk(ControlIdentity("c1")),
		mk(NodeIdentity("ip-10-0-0-1.ec2.internal")),
	} {
		got, err := IdentityFromCert(&x509.Certificate{Subject: id.Subject()})
		if err != nil || got != id {
			t.Errorf("%v: got %+v, %v", id, got, err)
		}
	}
}

func TestIdentityFromCertRefuses(t *testing.T) {
	cases := []struct {
		name string
		subj pkix.Name
		want string
	}{
		{"no group", pkix.Name{CommonName: "admin"}, "exactly one skiff group"},
		{"two groups", pkix.Name{CommonName: "admin", Organization: []string{GroupAdmins, GroupNodes}}, "has 2"},
		{"unknown group", pkix.Name{CommonName: "admin", Organization: []string{"skiff:root"}}, `unknown group "skiff:root"`},
		{"node cn in admins", pkix.Name{CommonName: "node:w1", Organization: []string{GroupAdmins}}, "does not match"},
		{"admin cn in viewers", pkix.Name{CommonName: "admin", Organization: []string{GroupViewers}}, "does not match"},
		{"control as node", pkix.Name{CommonName: "control:c1", Organization: []string{GroupNodes}}, "does not match"},
		{"bad node name", pkix.Name{CommonName: "node:W_1", Organization: []string{GroupNodes}}, `"W_1"`},
		{"empty name", pkix.Name{CommonName: "node:", Organization: []string{GroupNodes}}, "empty"},
		{"kubernetes masters", pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}, "exactly one skiff group"},
	}
	for _, c := range cases {
		_, err := IdentityFromCert(&x509.Certificate{Subject: c.subj})
		if !errors.Is(err, ErrBadIdentity) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want ErrBadIdentity containing %q", c.name, err, c.want)
		}
	}
	if _, err := IdentityFromCert(nil); !errors.Is(err, ErrBadIdentity) {
		t.Errorf("nil cert: %v", err)
	}
	// Foreign organizations beside the one Skiff group are ignored.
	id, err := IdentityFromCert(&x509.Certificate{Subject: pkix.Name{CommonName: "node:w1", Organization: []string{"acme", GroupNodes}}})
	if err != nil || id.Name != "w1" {
		t.Errorf("extra org: %+v %v", id, err)
	}
}

func TestIdentityConstructorsValidate(t *testing.T) {
	if _, err := UserIdentity("bob", RoleNode); err == nil || !strings.Contains(err.Error(), "role must be") {
		t.Errorf("user with node role: %v", err)
	}
	for _, bad := range []string{"", "-a", "a-", "A", "a..b", "a_b", strings.Repeat("a", 64)} {
		if _, err := NodeIdentity(bad); !errors.Is(err, ErrBadIdentity) {
			t.Errorf("NodeIdentity(%q) = %v", bad, err)
		}
	}
}

func TestIdentityFromNames(t *testing.T) {
	id, err := IdentityFromNames("node:w1", []string{GroupNodes})
	if err != nil || id.Role != RoleNode || id.Name != "w1" {
		t.Fatalf("%+v %v", id, err)
	}
	if _, err := IdentityFromNames("node:w1", nil); !errors.Is(err, ErrBadIdentity) {
		t.Fatalf("no groups: %v", err)
	}
}
