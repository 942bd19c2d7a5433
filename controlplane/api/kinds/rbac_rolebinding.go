package kinds

import (
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

var _ = define(Kind{
	Name: "RoleBinding", Plural: "rolebindings", Singular: "rolebinding", Group: RBACGroup,
	APIVersions: []string{RBACGroup + "/v1"},
	Retired:     map[string]string{RBACGroup + "/v1beta1": "removed in Kubernetes 1.22", RBACGroup + "/v1alpha1": "removed in Kubernetes 1.22"},
	Namespaced:  true,
	nameCheck:   IsPathSegmentName,
	newObject:   func() Object { return &apiv1.RoleBinding{} },
	columns:     []Column{{Name: "NAME"}, {Name: "ROLE"}, {Name: "AGE"}, {Name: "USERS", Wide: true}, {Name: "GROUPS", Wide: true}, {Name: "SERVICEACCOUNTS", Wide: true}},
}, nil, func(b *apiv1.RoleBinding) FieldErrors {
	return validateBinding(b.GetRoleRef(), b.GetSubjects(), false)
}, func(b *apiv1.RoleBinding, now time.Time) []string {
	u, g, sa := subjectColumns(b.GetSubjects())
	return []string{b.GetMetadata().GetName(), roleRefString(b.GetRoleRef()), age(b.GetMetadata().GetCreationTimestamp(), now), u, g, sa}
})

// subjectColumns are kubectl's USERS, GROUPS and SERVICEACCOUNTS columns.
func subjectColumns(subjects []*apiv1.Subject) (users, groups, sas string) {
	var u, g, s []string
	for _, sub := range subjects {
		switch sub.GetKind() {
		case "User":
			u = append(u, sub.GetName())
		case "Group":
			g = append(g, sub.GetName())
		case "ServiceAccount":
			s = append(s, sub.GetNamespace()+"/"+sub.GetName())
		}
	}
	return strings.Join(u, ", "), strings.Join(g, ", "), strings.Join(s, ", ")
}
