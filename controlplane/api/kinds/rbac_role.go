package kinds

import (
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// RBACGroup is the API group of Role, ClusterRole and their bindings.
const RBACGroup = "rbac.authorization.k8s.io"

var _ = define(Kind{
	Name: "Role", Plural: "roles", Singular: "role", Group: RBACGroup,
	APIVersions: []string{RBACGroup + "/v1"},
	Retired:     map[string]string{RBACGroup + "/v1beta1": "removed in Kubernetes 1.22", RBACGroup + "/v1alpha1": "removed in Kubernetes 1.22"},
	Namespaced:  true,
	nameCheck:   IsPathSegmentName,
	newObject:   func() Object { return &apiv1.Role{} },
	columns:     []Column{{Name: "NAME"}, {Name: "CREATED AT"}},
}, nil, func(r *apiv1.Role) FieldErrors {
	return validatePolicyRules(r.GetRules(), true, "rules")
}, func(r *apiv1.Role, _ time.Time) []string {
	return []string{r.GetMetadata().GetName(), r.GetMetadata().GetCreationTimestamp()}
})

// IsPathSegmentName is Kubernetes' name rule for RBAC objects: any name
// that is a safe path segment (no "/" or "%", not "." or ".."), so
// "system:aggregate-to-view" is valid.
func IsPathSegmentName(s string) []string {
	var msgs []string
	if s == "." || s == ".." {
		msgs = append(msgs, "may not be '.' or '..'")
	}
	if strings.ContainsAny(s, "/%") {
		msgs = append(msgs, "may not contain '/' or '%'")
	}
	if len(s) > 253 {
		msgs = append(msgs, "must be no more than 253 characters")
	}
	return msgs
}

// validatePolicyRules checks that every rule names verbs and either
// resources (with apiGroups) or, in cluster roles only, nonResourceURLs.
func validatePolicyRules(rules []*apiv1.PolicyRule, namespaced bool, path string) FieldErrors {
	var errs FieldErrors
	for i, r := range rules {
		p := idx(path, i)
		if len(r.GetVerbs()) == 0 {
			errs = append(errs, Required(p+".verbs", "verbs must contain at least one value"))
		}
		if len(r.GetNonResourceURLs()) > 0 {
			if namespaced {
				errs = append(errs, Invalid(p+".nonResourceURLs", r.GetNonResourceURLs(), "namespaced rules cannot apply to non-resource URLs"))
			}
			if len(r.GetApiGroups()) > 0 || len(r.GetResources()) > 0 {
				errs = append(errs, Invalid(p+".nonResourceURLs", r.GetNonResourceURLs(), "rules cannot apply to both regular resources and non-resource URLs"))
			}
			continue
		}
		if len(r.GetApiGroups()) == 0 {
			errs = append(errs, Required(p+".apiGroups", `resource rules must supply at least one api group ("" for the core group)`))
		}
		if len(r.GetResources()) == 0 {
			errs = append(errs, Required(p+".resources", "resource rules must supply at least one resource"))
		}
	}
	return errs
}

// validateBinding checks a (Cluster)RoleBinding's roleRef and subjects;
// clusterScoped bindings may refer only to ClusterRoles.
func validateBinding(ref *apiv1.RoleRef, subjects []*apiv1.Subject, clusterScoped bool) FieldErrors {
	var errs FieldErrors
	if ref.GetApiGroup() != RBACGroup {
		errs = append(errs, NotSupported("roleRef.apiGroup", ref.GetApiGroup(), []string{RBACGroup}))
	}
	kinds := []string{"Role", "ClusterRole"}
	if clusterScoped {
		kinds = []string{"ClusterRole"}
	}
	if !containsString(kinds, ref.GetKind()) {
		errs = append(errs, NotSupported("roleRef.kind", ref.GetKind(), kinds))
	}
	if ref.GetName() == "" {
		errs = append(errs, Required("roleRef.name", "the role the binding grants"))
	} else {
		errs = append(errs, check("roleRef.name", ref.GetName(), IsPathSegmentName(ref.GetName()))...)
	}
	for i, s := range subjects {
		p := idx("subjects", i)
		if s.GetName() == "" {
			errs = append(errs, Required(p+".name", "the user, group or service account granted"))
		}
		switch s.GetKind() {
		case "ServiceAccount":
			if s.GetApiGroup() != "" {
				errs = append(errs, NotSupported(p+".apiGroup", s.GetApiGroup(), []string{""}))
			}
			if s.GetNamespace() == "" {
				errs = append(errs, Required(p+".namespace", "a ServiceAccount subject names its namespace"))
			}
		case "User", "Group":
			if s.GetApiGroup() != RBACGroup {
				errs = append(errs, NotSupported(p+".apiGroup", s.GetApiGroup(), []string{RBACGroup}))
			}
		default:
			errs = append(errs, NotSupported(p+".kind", s.GetKind(), []string{"ServiceAccount", "User", "Group"}))
		}
	}
	return errs
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func roleRefString(ref *apiv1.RoleRef) string { return ref.GetKind() + "/" + ref.GetName() }
