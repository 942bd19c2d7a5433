package kinds

import (
	"strconv"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// PodDisruptionBudget (policy/v1): the disruption controller keeps its
// status; the API's Evict call reads it in the eviction's own transaction.
var _ = define(Kind{
	Name: "PodDisruptionBudget", Plural: "poddisruptionbudgets", Singular: "poddisruptionbudget", ShortNames: []string{"pdb"},
	Group: "policy", APIVersions: []string{"policy/v1"},
	Retired:    map[string]string{"policy/v1beta1": "removed in Kubernetes 1.25"},
	Namespaced: true,
	newObject:  func() Object { return &apiv1.PodDisruptionBudget{} },
	columns:    []Column{{Name: "NAME"}, {Name: "MIN AVAILABLE"}, {Name: "MAX UNAVAILABLE"}, {Name: "ALLOWED DISRUPTIONS"}, {Name: "AGE"}},
}, func(p *apiv1.PodDisruptionBudget) {
	if p.Spec == nil {
		p.Spec = &apiv1.PodDisruptionBudgetSpec{}
	}
}, validatePDB, func(p *apiv1.PodDisruptionBudget, now time.Time) []string {
	s := p.GetSpec()
	if s == nil {
		s = &apiv1.PodDisruptionBudgetSpec{}
	}
	minAvail, maxUnavail := "N/A", "N/A"
	if s.MinAvailable != nil {
		minAvail = s.GetMinAvailable()
	}
	if s.MaxUnavailable != nil {
		maxUnavail = s.GetMaxUnavailable()
	}
	return []string{p.GetMetadata().GetName(), minAvail, maxUnavail,
		strconv.Itoa(int(p.GetStatus().GetDisruptionsAllowed())), age(p.GetMetadata().GetCreationTimestamp(), now)}
})

func validatePDB(p *apiv1.PodDisruptionBudget) FieldErrors {
	s := p.GetSpec()
	if s == nil {
		return nil
	}
	var errs FieldErrors
	if s.MinAvailable != nil && s.MaxUnavailable != nil {
		errs = append(errs, Invalid("spec", "minAvailable and maxUnavailable", "minAvailable and maxUnavailable cannot be both set"))
	}
	if s.MinAvailable != nil {
		errs = append(errs, validatePDBCount("spec.minAvailable", s.GetMinAvailable())...)
	}
	if s.MaxUnavailable != nil {
		errs = append(errs, validatePDBCount("spec.maxUnavailable", s.GetMaxUnavailable())...)
	}
	if s.GetSelector() != nil {
		errs = append(errs, validateLabelSelector(s.GetSelector(), "spec.selector")...)
	}
	if s.UnhealthyPodEvictionPolicy != nil {
		errs = append(errs, oneOf("spec.unhealthyPodEvictionPolicy", s.GetUnhealthyPodEvictionPolicy(), "IfHealthyBudget", "AlwaysAllow")...)
	}
	return errs
}

func validatePDBCount(path, v string) FieldErrors {
	if v == "" {
		return FieldErrors{Invalid(path, v, "must be an integer or a percentage (e.g. 50%)")}
	}
	return validateIntOrPercent(path, v)
}
