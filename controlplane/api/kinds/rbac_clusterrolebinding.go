package kinds

import (
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

var _ = define(Kind{
	Name: "ClusterRoleBinding", Plural: "clusterrolebindings", Singular: "clusterrolebinding", Group: RBACGroup,
	APIVersions: []string{RBACGroup + "/v1"},
	Retired:     map[string]string{RBACGroup + "/v1beta1": "removed in Kubernetes 1.22", RBACGroup + "/v1alpha1": "removed in Kubernetes 1.22"},
	nameCheck:   IsPathSegmentName,
	newObject:   func() Object { return &apiv1.ClusterRoleBinding{} },
	columns:     []Column{{Name: "NAME"}, {Name: "ROLE"}, {Name: "AGE"}, {Name: "USERS", Wide: true}, {Name: "GROUPS", Wide: true}, {Name: "SERVICEACCOUNTS", Wide: true}},
}, nil, func(b *apiv1.ClusterRoleBinding) FieldErrors {
	return validateBinding(b.GetRoleRef(), b.GetSubjects(), true)
}, func(b *apiv1.ClusterRoleBinding, now time.Time) []string {
	u, g, sa := subjectColumns(b.GetSubjects())
	return []string{b.GetMetadata().GetName(), roleRefString(b.GetRoleRef()), age(b.GetMetadata().GetCreationTimestamp(), now), u, g, sa}
})
