package kinds

import (
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// IngressClass: which controller serves the Ingresses naming the class.
// The control plane's leader keeps the built-in class "skiff" (the
// default) present; see controllers/ingressstatus.
var _ = define(Kind{
	Name: "IngressClass", Plural: "ingressclasses", Singular: "ingressclass", Group: "networking.k8s.io",
	APIVersions: []string{"networking.k8s.io/v1"},
	Retired:     map[string]string{"networking.k8s.io/v1beta1": "removed in Kubernetes 1.22"},
	Namespaced:  false,
	newObject:   func() Object { return &apiv1.IngressClass{} },
	columns:     []Column{{Name: "NAME"}, {Name: "CONTROLLER"}, {Name: "PARAMETERS"}, {Name: "AGE"}},
}, nil, func(c *apiv1.IngressClass) FieldErrors {
	var errs FieldErrors
	if c.GetSpec().GetController() == "" {
		errs = append(errs, Required("spec.controller", "the controller that serves the class, e.g. skiff.dev/ingress"))
	}
	if p := c.GetSpec().GetParameters(); p != nil {
		if p.GetKind() == "" {
			errs = append(errs, Required("spec.parameters.kind", ""))
		}
		if p.GetName() == "" {
			errs = append(errs, Required("spec.parameters.name", ""))
		}
		if s := p.GetScope(); s != "" {
			errs = append(errs, oneOf("spec.parameters.scope", s, "Cluster", "Namespace")...)
			if s == "Namespace" && p.GetNamespace() == "" {
				errs = append(errs, Required("spec.parameters.namespace", "required when scope is Namespace"))
			}
		}
	}
	return errs
}, func(c *apiv1.IngressClass, now time.Time) []string {
	params := "<none>"
	if p := c.GetSpec().GetParameters(); p != nil {
		params = p.GetKind() + "/" + p.GetName()
	}
	return []string{c.GetMetadata().GetName(), c.GetSpec().GetController(), params, age(c.GetMetadata().GetCreationTimestamp(), now)}
})
