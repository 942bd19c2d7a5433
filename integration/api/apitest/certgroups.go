package apitest

import (
	"context"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/pki"
)

// RoleAuthorizer is the control nodes' authorizer as the API server uses
// it (roles, the node authorizer, NodeRestriction).
type RoleAuthorizer interface {
	api.Authorizer
	api.StoredNeeder
	api.ObjectAuthorizer
}

// CertGroups gives this kit's certificates, which carry only a common name,
// the group that name implies as certificates from the cluster CA carry it
// (node:<name> in skiff:nodes, admin in skiff:admins, user:viewer… in
// skiff:viewers), then defers to z:
// tests run the real authorizer against a Cluster's identities.
func CertGroups(z RoleAuthorizer) RoleAuthorizer { return certGroups{z} }

type certGroups struct{ z RoleAuthorizer }

func (g certGroups) attrs(a api.Attributes) api.Attributes {
	switch {
	case strings.HasPrefix(a.Identity.User, "node:"):
		a.Identity.Groups = []string{pki.GroupNodes}
	case a.Identity.User == pki.AdminUser:
		a.Identity.Groups = []string{pki.GroupAdmins}
	case strings.HasPrefix(a.Identity.User, "user:viewer"):
		a.Identity.Groups = []string{pki.GroupViewers}
	}
	return a
}

func (g certGroups) Authorize(ctx context.Context, a api.Attributes) error {
	return g.z.Authorize(ctx, g.attrs(a))
}

func (g certGroups) NeedsStored(a api.Attributes) bool { return g.z.NeedsStored(g.attrs(a)) }

func (g certGroups) AuthorizeObject(ctx context.Context, a api.Attributes, obj proto.Message) error {
	return g.z.AuthorizeObject(ctx, g.attrs(a), obj)
}
