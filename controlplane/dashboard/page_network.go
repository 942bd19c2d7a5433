package dashboard

import (
	"fmt"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Services and Ingresses.
func init() {
	definePage(&page{Name: "services", Title: "Services", Nav: true, NavOrder: 5, Kinds: []string{"Service", "Ingress"},
		Frags: func(v *view) []frag {
			type svc struct{ NS, Name, Type, ClusterIP, Ports, Selector string }
			type ing struct{ NS, Name, Class, Rules string }
			var out []frag
			for _, s := range listOf[*apiv1.Service](v, "Service") {
				r := svc{NS: s.GetMetadata().GetNamespace(), Name: s.GetMetadata().GetName(), Type: s.GetSpec().GetType(), ClusterIP: s.GetSpec().GetClusterIP()}
				var ports, sel []string
				for _, p := range s.GetSpec().GetPorts() {
					ps := fmt.Sprintf("%d/%s", p.GetPort(), p.GetProtocol())
					if p.GetNodePort() != 0 {
						ps += fmt.Sprintf(" (node %d)", p.GetNodePort())
					}
					ports = append(ports, ps)
				}
				for k, v := range s.GetSpec().GetSelector() {
					sel = append(sel, k+"="+v)
				}
				r.Ports, r.Selector = strings.Join(ports, ", "), strings.Join(sel, ",")
				out = append(out, frag{ID: "s/" + r.NS + "/" + r.Name, Parent: "services", Template: "service-row", Data: r})
			}
			for _, i := range listOf[*apiv1.Ingress](v, "Ingress") {
				r := ing{NS: i.GetMetadata().GetNamespace(), Name: i.GetMetadata().GetName(), Class: i.GetSpec().GetIngressClassName()}
				var rules []string
				for _, rule := range i.GetSpec().GetRules() {
					for _, p := range rule.GetHttp().GetPaths() {
						rules = append(rules, fmt.Sprintf("%s%s → %s:%d", rule.GetHost(), p.GetPath(),
							p.GetBackend().GetService().GetName(), p.GetBackend().GetService().GetPort().GetNumber()))
					}
				}
				r.Rules = strings.Join(rules, "; ")
				out = append(out, frag{ID: "i/" + r.NS + "/" + r.Name, Parent: "ingresses", Template: "ingress-row", Data: r})
			}
			return out
		}})
}
