package endpoints

import (
	"sort"
	"strconv"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// PodReady reports the pod's Ready condition.
func PodReady(p *apiv1.Pod) bool {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}

// resolvePorts maps a Service's ports onto one pod: numeric targetPorts as
// they are, named ones through the pod's container ports (a port whose
// name the pod lacks is left out for that pod, as Kubernetes does).
func resolvePorts(svc *apiv1.Service, p *apiv1.Pod) []*apiv1.EndpointPort {
	var out []*apiv1.EndpointPort
	for _, sp := range svc.GetSpec().GetPorts() {
		proto := sp.GetProtocol()
		if proto == "" {
			proto = "TCP"
		}
		target := sp.GetTargetPort()
		if target == "" {
			target = strconv.Itoa(int(sp.GetPort()))
		}
		port := int32(0)
		if n, err := strconv.Atoi(target); err == nil {
			port = int32(n)
		} else {
			port = namedPort(p, target, proto)
		}
		if port <= 0 {
			continue
		}
		ep := &apiv1.EndpointPort{Name: sp.GetName(), Port: port, Protocol: proto}
		if sp.AppProtocol != nil {
			ep.AppProtocol = sp.AppProtocol
		}
		out = append(out, ep)
	}
	return out
}

func namedPort(p *apiv1.Pod, name, proto string) int32 {
	for _, c := range p.GetSpec().GetContainers() {
		for _, cp := range c.GetPorts() {
			cpProto := cp.GetProtocol()
			if cpProto == "" {
				cpProto = "TCP"
			}
			if cp.GetName() == name && cpProto == proto {
				return cp.GetContainerPort()
			}
		}
	}
	return 0
}

func portsKey(ports []*apiv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		b.WriteString(p.GetName())
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(p.GetPort())))
		b.WriteByte('/')
		b.WriteString(p.GetProtocol())
		b.WriteByte(';')
	}
	return b.String()
}

// Subsets computes a Service's endpoint subsets from candidate pods (the
// caller passes pods of the Service's namespace matching its selector).
func Subsets(svc *apiv1.Service, pods []*apiv1.Pod) []*apiv1.EndpointSubset {
	type group struct {
		ports           []*apiv1.EndpointPort
		ready, notReady []*apiv1.EndpointAddress
	}
	groups := map[string]*group{}
	for _, p := range pods {
		if p.GetStatus().GetPodIP() == "" || p.GetMetadata().GetDeletionTimestamp() != "" {
			continue
		}
		if ph := p.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
			continue
		}
		ports := resolvePorts(svc, p)
		if len(ports) == 0 && len(svc.GetSpec().GetPorts()) > 0 {
			continue
		}
		k := portsKey(ports)
		g := groups[k]
		if g == nil {
			g = &group{ports: ports}
			groups[k] = g
		}
		node := p.GetSpec().GetNodeName()
		addr := &apiv1.EndpointAddress{Ip: p.GetStatus().GetPodIP(), TargetRef: &apiv1.ObjectReference{Kind: "Pod",
			Namespace: p.GetMetadata().GetNamespace(), Name: p.GetMetadata().GetName(), Uid: p.GetMetadata().GetUid()}}
		if node != "" {
			addr.NodeName = &node
		}
		if PodReady(p) || svc.GetSpec().GetPublishNotReadyAddresses() {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []*apiv1.EndpointSubset
	for _, k := range keys {
		g := groups[k]
		byIP := func(a []*apiv1.EndpointAddress) {
			sort.Slice(a, func(i, j int) bool {
				if a[i].GetIp() != a[j].GetIp() {
					return a[i].GetIp() < a[j].GetIp()
				}
				return a[i].GetTargetRef().GetName() < a[j].GetTargetRef().GetName()
			})
		}
		byIP(g.ready)
		byIP(g.notReady)
		out = append(out, &apiv1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady, Ports: g.ports})
	}
	return out
}
