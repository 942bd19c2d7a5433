package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"
)

// Role is what an identity may do, carried in the certificate subject's
// organization.
type Role string

// Roles. The bootstrap admin and admin users share RoleAdmin.
const (
	RoleAdmin   Role = "admin"
	RoleViewer  Role = "viewer"
	RoleControl Role = "control"
	RoleNode    Role = "node"
	// RoleUser is a user the cluster grants nothing by default: what it
	// may do comes from RBAC bindings of its name (or of skiff:users).
	RoleUser Role = "user"
)

// Organizations (subject O) carrying the roles.
const (
	GroupAdmins  = "skiff:admins"
	GroupViewers = "skiff:viewers"
	GroupControl = "skiff:control"
	GroupNodes   = "skiff:nodes"
	GroupUsers   = "skiff:users"
)

// Identity prefixes of the subject common name.
const (
	prefixUser    = "user:"
	prefixControl = "control:"
	prefixNode    = "node:"
	// AdminUser is the bootstrap administrator written by `ctl init`.
	AdminUser = "admin"
)

// ErrBadIdentity means a certificate subject or a requested identity does
// not follow the rules below.
var ErrBadIdentity = errors.New("invalid identity")

// Identity is who a certificate speaks for.
//
//	User            Role      Name
//	admin           admin     admin
//	user:alice      admin     alice
//	user:bob        viewer    bob
//	control:c1      control   c1
//	node:w1         node      w1
type Identity struct {
	// User is the subject common name.
	User string
	Role Role
	// Name is User without its prefix: the user, control node id or node name.
	Name string
}

func (id Identity) String() string { return fmt.Sprintf("%s (role %s)", id.User, id.Role) }

// AdminIdentity is the bootstrap administrator.
func AdminIdentity() Identity { return Identity{User: AdminUser, Role: RoleAdmin, Name: AdminUser} }

// UserIdentity is a named user with role admin, viewer or user.
func UserIdentity(name string, role Role) (Identity, error) {
	if role != RoleAdmin && role != RoleViewer && role != RoleUser {
		return Identity{}, fmt.Errorf("%w: user %q: role must be %q, %q or %q, got %q", ErrBadIdentity, name, RoleAdmin, RoleViewer, RoleUser, role)
	}
	if err := checkName("user name", name); err != nil {
		return Identity{}, err
	}
	return Identity{User: prefixUser + name, Role: role, Name: name}, nil
}

// ControlIdentity is the control node with the given id.
func ControlIdentity(id string) (Identity, error) {
	if err := checkName("control node id", id); err != nil {
		return Identity{}, err
	}
	return Identity{User: prefixControl + id, Role: RoleControl, Name: id}, nil
}

// NodeIdentity is the worker node with the given name.
func NodeIdentity(name string) (Identity, error) {
	if err := checkName("node name", name); err != nil {
		return Identity{}, err
	}
	return Identity{User: prefixNode + name, Role: RoleNode, Name: name}, nil
}

// Subject is the certificate subject encoding id.
func (id Identity) Subject() pkix.Name {
	return pkix.Name{CommonName: id.User, Organization: []string{groupOf(id.Role)}}
}

func groupOf(r Role) string {
	switch r {
	case RoleAdmin:
		return GroupAdmins
	case RoleViewer:
		return GroupViewers
	case RoleControl:
		return GroupControl
	case RoleNode:
		return GroupNodes
	case RoleUser:
		return GroupUsers
	}
	return ""
}

// IdentityFromCert reads the identity of a verified certificate. It refuses
// subjects that are not exactly one Skiff group with a matching common
// name, so a certificate minted for another purpose grants nothing.
func IdentityFromCert(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrBadIdentity)
	}
	return identityFromSubject(cert.Subject)
}

// IdentityFromNames is IdentityFromCert for a subject already taken apart
// (common name and organizations), as the API server's caller identity
// carries it.
func IdentityFromNames(commonName string, organizations []string) (Identity, error) {
	return identityFromSubject(pkix.Name{CommonName: commonName, Organization: organizations})
}

func identityFromSubject(subj pkix.Name) (Identity, error) {
	cn := subj.CommonName
	var role Role
	n := 0
	for _, o := range subj.Organization {
		if !strings.HasPrefix(o, "skiff:") {
			continue
		}
		n++
		switch o {
		case GroupAdmins:
			role = RoleAdmin
		case GroupViewers:
			role = RoleViewer
		case GroupControl:
			role = RoleControl
		case GroupNodes:
			role = RoleNode
		case GroupUsers:
			role = RoleUser
		default:
			return Identity{}, fmt.Errorf("%w: certificate %q has unknown group %q", ErrBadIdentity, cn, o)
		}
	}
	if n != 1 {
		return Identity{}, fmt.Errorf("%w: certificate %q must carry exactly one skiff group (organization), has %d in %q", ErrBadIdentity, cn, n, subj.Organization)
	}
	var (
		id  Identity
		err error
	)
	switch {
	case role == RoleAdmin && cn == AdminUser:
		return AdminIdentity(), nil
	case (role == RoleAdmin || role == RoleViewer || role == RoleUser) && strings.HasPrefix(cn, prefixUser):
		id, err = UserIdentity(strings.TrimPrefix(cn, prefixUser), role)
	case role == RoleControl && strings.HasPrefix(cn, prefixControl):
		id, err = ControlIdentity(strings.TrimPrefix(cn, prefixControl))
	case role == RoleNode && strings.HasPrefix(cn, prefixNode):
		id, err = NodeIdentity(strings.TrimPrefix(cn, prefixNode))
	default:
		return Identity{}, fmt.Errorf("%w: common name %q does not match group %q", ErrBadIdentity, cn, groupOf(role))
	}
	if err != nil {
		return Identity{}, err
	}
	return id, nil
}

// checkName accepts DNS-1123 subdomains (dot-separated labels of
// lower-case letters, digits and '-', each starting and ending
// alphanumeric, at most 253 in all): names that are safe in certificate
// subjects, Node object names and store keys, and that hostnames fit.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrBadIdentity, what)
	}
	if len(s) > 253 {
		return fmt.Errorf("%w: %s %q is longer than 253 characters", ErrBadIdentity, what, s)
	}
	for _, label := range strings.Split(s, ".") {
		if !validLabel(label) {
			return fmt.Errorf("%w: %s %q: use lower-case letters, digits, '-' and '.' (each dot-separated part 1-63 long, starting and ending with a letter or digit)", ErrBadIdentity, what, s)
		}
	}
	return nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for i, c := range l {
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(l)-1) {
			return false
		}
	}
	return true
}
