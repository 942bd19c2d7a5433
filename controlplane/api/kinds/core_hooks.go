package kinds

import (
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The Hooks of core kinds (Pod, Service, Namespace), named in their define
// calls in core.go.

// NamespaceFinalizer is the spec finalizer that holds a terminating
// namespace until the server has deleted its contents.
const NamespaceFinalizer = "kubernetes"

// DefaultPodGrace is Kubernetes' terminationGracePeriodSeconds default.
const DefaultPodGrace = 30

var podHooks = Hooks[*apiv1.Pod]{
	// The QoS class follows from the spec as admitted (LimitRange
	// defaults included), the same on every attempt.
	PrepareForCreate: func(p *apiv1.Pod) {
		if p.Spec != nil && p.Status != nil {
			p.Status.QosClass = QOSClass(p.Spec)
		}
	},
	GracePeriod:       podGracePeriod,
	PodSpec:           func(p *apiv1.Pod) *apiv1.PodSpec { return p.GetSpec() },
	QuotaCountsPlural: true,
	QuotaUsage:        podQuotaUsage,
	QuotaCharges: func(name string) bool {
		return strings.HasPrefix(name, "requests.") || strings.HasPrefix(name, "limits.") || name == "cpu" || name == "memory"
	},
	QuotaRequired: []string{"requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory"},
}

// podGracePeriod: a pod bound to a node gets its grace period (the node's
// agent stops it and confirms with a grace-0 delete); one that never ran
// or has finished goes at once. A second delete may shorten the grace,
// never lengthen it.
func podGracePeriod(p *apiv1.Pod, requested *int64) int64 {
	if p.GetSpec().GetNodeName() == "" {
		return 0
	}
	if ph := p.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
		return 0
	}
	g := int64(DefaultPodGrace)
	if t := p.GetSpec().TerminationGracePeriodSeconds; t != nil {
		g = *t
	}
	if requested != nil {
		g = *requested
	}
	if md := p.GetMetadata(); md != nil && md.DeletionGracePeriodSeconds != nil && *md.DeletionGracePeriodSeconds < g {
		g = *md.DeletionGracePeriodSeconds
	}
	return g
}

// podQuotaUsage sums a pod's requests and limits ("requests.cpu",
// "limits.memory"; bare "cpu"/"memory" mean requests).
func podQuotaUsage(pod *apiv1.Pod, u map[string]Quantity) {
	sum := func(which string, pick func(*apiv1.ResourceRequirements) map[string]string) {
		totals := map[string]Quantity{}
		for _, c := range pod.GetSpec().GetContainers() {
			for res, v := range pick(c.GetResources()) {
				if q, err := ParseQuantity(v); err == nil {
					totals[res] = totals[res].Add(q)
				}
			}
		}
		// An init container runs alone: the pod needs the larger of it and
		// the sum of the app containers.
		for _, c := range pod.GetSpec().GetInitContainers() {
			for res, v := range pick(c.GetResources()) {
				if q, err := ParseQuantity(v); err == nil && q.Cmp(totals[res]) > 0 {
					totals[res] = q
				}
			}
		}
		for res, q := range totals {
			u[which+"."+res] = q
			if which == "requests" {
				u[res] = q
			}
		}
	}
	sum("requests", func(r *apiv1.ResourceRequirements) map[string]string { return r.GetRequests() })
	sum("limits", func(r *apiv1.ResourceRequirements) map[string]string { return r.GetLimits() })
}

var serviceHooks = Hooks[*apiv1.Service]{
	QuotaCountsPlural: true,
	QuotaUsage: func(svc *apiv1.Service, u map[string]Quantity) {
		switch svc.GetSpec().GetType() {
		case "NodePort":
			u["services.nodeports"] = NewQuantity(int64(len(svc.GetSpec().GetPorts())))
		case "LoadBalancer":
			u["services.loadbalancers"] = NewQuantity(1)
			u["services.nodeports"] = NewQuantity(int64(len(svc.GetSpec().GetPorts())))
		}
	},
	QuotaCharges: func(name string) bool { return strings.HasPrefix(name, "services.") },
}

// namespaceHooks: deleting a namespace marks it Terminating with its spec
// finalizer; the server deletes its contents, then the namespace.
var namespaceHooks = Hooks[*apiv1.Namespace]{
	Terminate: func(n *apiv1.Namespace) {
		if n.Spec == nil {
			n.Spec = &apiv1.NamespaceSpec{}
		}
		if !slicesContains(n.Spec.Finalizers, NamespaceFinalizer) {
			n.Spec.Finalizers = append(n.Spec.Finalizers, NamespaceFinalizer)
		}
		if n.Status == nil {
			n.Status = &apiv1.NamespaceStatus{}
		}
		n.Status.Phase = "Terminating"
	},
}

func slicesContains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
