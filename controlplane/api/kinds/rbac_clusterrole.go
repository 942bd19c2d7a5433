package kinds

import (
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

var _ = define(Kind{
	Name: "ClusterRole", Plural: "clusterroles", Singular: "clusterrole", Group: RBACGroup,
	APIVersions: []string{RBACGroup + "/v1"},
	Retired:     map[string]string{RBACGroup + "/v1beta1": "removed in Kubernetes 1.22", RBACGroup + "/v1alpha1": "removed in Kubernetes 1.22"},
	nameCheck:   IsPathSegmentName,
	newObject:   func() Object { return &apiv1.ClusterRole{} },
	columns:     []Column{{Name: "NAME"}, {Name: "CREATED AT"}},
}, nil, func(r *apiv1.ClusterRole) FieldErrors {
	errs := validatePolicyRules(r.GetRules(), false, "rules")
	if ag := r.GetAggregationRule(); ag != nil {
		if len(ag.GetClusterRoleSelectors()) == 0 {
			errs = append(errs, Required("aggregationRule.clusterRoleSelectors", "an aggregation rule needs at least one selector"))
		}
		for i, sel := range ag.GetClusterRoleSelectors() {
			errs = append(errs, validateLabelSelector(sel, idx("aggregationRule.clusterRoleSelectors", i))...)
		}
	}
	return errs
}, func(r *apiv1.ClusterRole, _ time.Time) []string {
	return []string{r.GetMetadata().GetName(), r.GetMetadata().GetCreationTimestamp()}
})
