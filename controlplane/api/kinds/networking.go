package kinds

import (
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

var _ = define(Kind{
	Name: "Ingress", Plural: "ingresses", Singular: "ingress", ShortNames: []string{"ing"}, Group: "networking.k8s.io",
	APIVersions: []string{"networking.k8s.io/v1"},
	Retired: map[string]string{"extensions/v1beta1": "removed in Kubernetes 1.22",
		"networking.k8s.io/v1beta1": "removed in Kubernetes 1.22"},
	Namespaced: true,
	newObject:  func() Object { return &apiv1.Ingress{} },
	columns:    []Column{{Name: "NAME"}, {Name: "CLASS"}, {Name: "HOSTS"}, {Name: "ADDRESS"}, {Name: "PORTS"}, {Name: "AGE"}},
}, nil, func(in *apiv1.Ingress) FieldErrors {
	s := in.GetSpec()
	if s == nil {
		return FieldErrors{Required("spec", "")}
	}
	var errs FieldErrors
	if s.GetDefaultBackend() == nil && len(s.GetRules()) == 0 {
		errs = append(errs, Required("spec.rules", "either defaultBackend or rules must be specified"))
	}
	errs = append(errs, validateIngressBackend(s.GetDefaultBackend(), "spec.defaultBackend")...)
	for i, r := range s.GetRules() {
		p := idx("spec.rules", i)
		if h := r.GetHost(); h != "" {
			errs = append(errs, check(p+".host", h, IsDNS1123Subdomain(strings.TrimPrefix(h, "*.")))...)
		}
		if r.GetHttp() == nil {
			continue
		}
		if len(r.GetHttp().GetPaths()) == 0 {
			errs = append(errs, Required(p+".http.paths", ""))
		}
		for j, hp := range r.GetHttp().GetPaths() {
			pp := idx(p+".http.paths", j)
			errs = append(errs, oneOf(pp+".pathType", hp.GetPathType(), "Exact", "Prefix", "ImplementationSpecific")...)
			if hp.GetPathType() != "ImplementationSpecific" && !strings.HasPrefix(hp.GetPath(), "/") {
				errs = append(errs, Invalid(pp+".path", hp.GetPath(), "must be an absolute path"))
			}
			if hp.GetBackend() == nil {
				errs = append(errs, Required(pp+".backend", ""))
			}
			errs = append(errs, validateIngressBackend(hp.GetBackend(), pp+".backend")...)
		}
	}
	for i, t := range s.GetTls() {
		for j, h := range t.GetHosts() {
			errs = append(errs, check(idx(idx("spec.tls", i)+".hosts", j), h, IsDNS1123Subdomain(strings.TrimPrefix(h, "*.")))...)
		}
	}
	return errs
}, func(in *apiv1.Ingress, now time.Time) []string {
	var hosts, addrs []string
	for _, r := range in.GetSpec().GetRules() {
		if r.GetHost() != "" {
			hosts = append(hosts, r.GetHost())
		}
	}
	if len(hosts) == 0 {
		hosts = []string{"*"}
	}
	for _, l := range in.GetStatus().GetLoadBalancer().GetIngress() {
		addrs = append(addrs, l.GetIp()+l.GetHostname())
	}
	ports := "80"
	if len(in.GetSpec().GetTls()) > 0 {
		ports = "80, 443"
	}
	class := "<none>"
	if in.GetSpec() != nil && in.GetSpec().IngressClassName != nil {
		class = *in.GetSpec().IngressClassName
	}
	return []string{in.GetMetadata().GetName(), class, strings.Join(hosts, ","), strings.Join(addrs, ","), ports,
		age(in.GetMetadata().GetCreationTimestamp(), now)}
})

func validateIngressBackend(b *apiv1.IngressBackend, path string) FieldErrors {
	if b == nil {
		return nil
	}
	var errs FieldErrors
	switch {
	case b.GetService() != nil && b.GetResource() != nil:
		errs = append(errs, Invalid(path, "service and resource", "cannot set both service and resource"))
	case b.GetService() != nil:
		svc := b.GetService()
		errs = append(errs, check(path+".service.name", svc.GetName(), IsDNS1035Label(svc.GetName()))...)
		port := svc.GetPort()
		switch {
		case port == nil || (port.GetName() == "" && port.GetNumber() == 0):
			errs = append(errs, Required(path+".service.port", "port name or number is required"))
		case port.GetName() != "" && port.GetNumber() != 0:
			errs = append(errs, Invalid(path+".service.port", port.GetName(), "cannot set both port name and port number"))
		case port.GetNumber() != 0:
			errs = append(errs, validatePort(path+".service.port.number", port.GetNumber())...)
		default:
			errs = append(errs, check(path+".service.port.name", port.GetName(), IsPortName(port.GetName()))...)
		}
	case b.GetResource() != nil:
		if b.GetResource().GetKind() == "" {
			errs = append(errs, Required(path+".resource.kind", ""))
		}
		if b.GetResource().GetName() == "" {
			errs = append(errs, Required(path+".resource.name", ""))
		}
	default:
		errs = append(errs, Required(path, "one of service or resource"))
	}
	return errs
}
