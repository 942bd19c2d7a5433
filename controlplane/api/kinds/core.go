package kinds

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// retiredCore: apiVersions of the pre-1.0 core API.
var retiredCore = map[string]string{
	"v1beta1": "the pre-1.0 API was removed in Kubernetes 1.0",
	"v1beta2": "the pre-1.0 API was removed in Kubernetes 1.0",
	"v1beta3": "the pre-1.0 API was removed in Kubernetes 1.0",
}

var podKind = define(Kind{
	Name: "Pod", Plural: "pods", Singular: "pod", ShortNames: []string{"po"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.Pod{} },
	columns: []Column{{Name: "NAME"}, {Name: "READY"}, {Name: "STATUS"}, {Name: "RESTARTS"}, {Name: "AGE"},
		{Name: "IP", Wide: true}, {Name: "NODE", Wide: true}},
}, defaultPod, func(p *apiv1.Pod) FieldErrors {
	if p.Spec == nil {
		return FieldErrors{Required("spec", "")}
	}
	return validatePodSpec(p.Spec, "spec")
}, func(p *apiv1.Pod, now time.Time) []string {
	ready, restarts := 0, int32(0)
	for _, cs := range p.GetStatus().GetContainerStatuses() {
		if cs.GetReady() {
			ready++
		}
		restarts += cs.GetRestartCount()
	}
	return []string{p.GetMetadata().GetName(), fmt.Sprintf("%d/%d", ready, len(p.GetSpec().GetContainers())),
		PodStatusReason(p), strconv.Itoa(int(restarts)), age(p.GetMetadata().GetCreationTimestamp(), now),
		orNone(p.GetStatus().GetPodIP()), orNone(p.GetSpec().GetNodeName())}
}, podHooks)

func defaultPod(p *apiv1.Pod) {
	if p.Spec == nil {
		return
	}
	defaultPodSpec(p.Spec)
	// Kubernetes copies limits into unset requests (SetDefaults_Pod).
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		r := c.GetResources()
		if r == nil || len(r.Limits) == 0 {
			continue
		}
		if r.Requests == nil {
			r.Requests = map[string]string{}
		}
		for name, v := range r.Limits {
			if _, ok := r.Requests[name]; !ok {
				r.Requests[name] = v
			}
		}
	}
	if p.Status == nil {
		p.Status = &apiv1.PodStatus{}
	}
	if p.Status.Phase == "" {
		p.Status.Phase = "Pending"
	}
	if p.Status.QosClass == "" {
		p.Status.QosClass = QOSClass(p.Spec)
	}
}

// QOSClass computes a pod's quality-of-service class: Guaranteed when every
// container has cpu and memory limits equal to requests, BestEffort when no
// container has any request or limit, Burstable otherwise.
func QOSClass(s *apiv1.PodSpec) string {
	any, guaranteed := false, true
	for _, c := range append(slices.Clone(s.GetInitContainers()), s.GetContainers()...) {
		req, lim := c.GetResources().GetRequests(), c.GetResources().GetLimits()
		if len(req)+len(lim) > 0 {
			any = true
		}
		for _, r := range []string{"cpu", "memory"} {
			l, ok := lim[r]
			if !ok {
				guaranteed = false
				continue
			}
			q := req[r]
			if q == "" {
				q = l
			}
			lq, err1 := ParseQuantity(l)
			rq, err2 := ParseQuantity(q)
			if err1 != nil || err2 != nil || lq.Cmp(rq) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return "BestEffort"
	case guaranteed:
		return "Guaranteed"
	}
	return "Burstable"
}

// PodStatusReason is the STATUS column of `get pods`: Terminating, a
// container's waiting/terminated reason, or the phase.
func PodStatusReason(p *apiv1.Pod) string {
	if p.GetMetadata().GetDeletionTimestamp() != "" {
		return "Terminating"
	}
	reason := p.GetStatus().GetPhase()
	if p.GetStatus().GetReason() != "" {
		reason = p.GetStatus().GetReason()
	}
	for _, cs := range p.GetStatus().GetContainerStatuses() {
		if w := cs.GetState().GetWaiting(); w != nil && w.GetReason() != "" {
			return w.GetReason()
		}
		if t := cs.GetState().GetTerminated(); t != nil && t.GetReason() != "" && reason == "Running" {
			reason = t.GetReason()
		}
	}
	return orNone(reason)
}

var _ = define(Kind{
	Name: "Namespace", Plural: "namespaces", Singular: "namespace", ShortNames: []string{"ns"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: false,
	newObject: func() Object { return &apiv1.Namespace{} },
	nameCheck: IsDNS1123Label,
	columns:   []Column{{Name: "NAME"}, {Name: "STATUS"}, {Name: "AGE"}},
}, func(n *apiv1.Namespace) {
	if n.Status == nil {
		n.Status = &apiv1.NamespaceStatus{}
	}
	if n.Status.Phase == "" {
		n.Status.Phase = "Active"
	}
}, func(n *apiv1.Namespace) FieldErrors {
	var errs FieldErrors
	for i, f := range n.GetSpec().GetFinalizers() {
		errs = append(errs, check(idx("spec.finalizers", i), f, IsQualifiedName(f))...)
	}
	if ph := n.GetStatus().GetPhase(); ph != "" {
		errs = append(errs, oneOf("status.phase", ph, "Active", "Terminating")...)
	}
	return errs
}, func(n *apiv1.Namespace, now time.Time) []string {
	return []string{n.GetMetadata().GetName(), n.GetStatus().GetPhase(), age(n.GetMetadata().GetCreationTimestamp(), now)}
}, namespaceHooks)

var _ = define(Kind{
	Name: "Node", Plural: "nodes", Singular: "node", ShortNames: []string{"no"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: false,
	newObject: func() Object { return &apiv1.Node{} },
	columns: []Column{{Name: "NAME"}, {Name: "STATUS"}, {Name: "ROLES"}, {Name: "AGE"}, {Name: "VERSION"},
		{Name: "INTERNAL-IP", Wide: true}, {Name: "EXTERNAL-IP", Wide: true}, {Name: "OS-IMAGE", Wide: true},
		{Name: "KERNEL-VERSION", Wide: true}, {Name: "CONTAINER-RUNTIME", Wide: true}},
}, nil, func(n *apiv1.Node) FieldErrors {
	var errs FieldErrors
	seen := map[string]bool{}
	for i, t := range n.GetSpec().GetTaints() {
		p := idx("spec.taints", i)
		errs = append(errs, check(p+".key", t.GetKey(), IsQualifiedName(t.GetKey()))...)
		errs = append(errs, check(p+".value", t.GetValue(), IsLabelValue(t.GetValue()))...)
		errs = append(errs, oneOf(p+".effect", t.GetEffect(), taintEffects...)...)
		if seen[t.GetKey()+"/"+t.GetEffect()] {
			errs = append(errs, Duplicate(p, t.GetKey()+":"+t.GetEffect()))
		}
		seen[t.GetKey()+"/"+t.GetEffect()] = true
	}
	errs = append(errs, validateQuantities(n.GetStatus().GetCapacity(), "status.capacity")...)
	errs = append(errs, validateQuantities(n.GetStatus().GetAllocatable(), "status.allocatable")...)
	for i, a := range n.GetStatus().GetAddresses() {
		p := idx("status.addresses", i)
		errs = append(errs, oneOf(p+".type", a.GetType(), "InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS")...)
		if a.GetAddress() == "" {
			errs = append(errs, Required(p+".address", ""))
		}
	}
	return errs
}, func(n *apiv1.Node, now time.Time) []string {
	// As kubectl: Ready only when the condition is True, NotReady when it
	// is False or Unknown (the node stopped reporting), Unknown without one.
	status := "Unknown"
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			status = "NotReady"
			if c.GetStatus() == "True" {
				status = "Ready"
			}
		}
	}
	if n.GetSpec().GetUnschedulable() {
		status += ",SchedulingDisabled"
	}
	var roles []string
	for l := range n.GetMetadata().GetLabels() {
		if r, ok := strings.CutPrefix(l, "node-role.kubernetes.io/"); ok && r != "" {
			roles = append(roles, r)
		}
	}
	slices.Sort(roles)
	addr := map[string]string{}
	for _, a := range n.GetStatus().GetAddresses() {
		if addr[a.GetType()] == "" {
			addr[a.GetType()] = a.GetAddress()
		}
	}
	info := n.GetStatus().GetNodeInfo()
	return []string{n.GetMetadata().GetName(), status, joinOrNone(roles), age(n.GetMetadata().GetCreationTimestamp(), now),
		info.GetKubeletVersion(), orNone(addr["InternalIP"]), orNone(addr["ExternalIP"]), orNone(info.GetOsImage()),
		orNone(info.GetKernelVersion()), orNone(info.GetContainerRuntimeVersion())}
})

var serviceTypes = []string{"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"}

// NodePortRange is the default Service node port range (Kubernetes'
// --service-node-port-range).
const NodePortMin, NodePortMax = 30000, 32767

var _ = define(Kind{
	Name: "Service", Plural: "services", Singular: "service", ShortNames: []string{"svc"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.Service{} },
	nameCheck: IsDNS1035Label,
	columns: []Column{{Name: "NAME"}, {Name: "TYPE"}, {Name: "CLUSTER-IP"}, {Name: "EXTERNAL-IP"}, {Name: "PORT(S)"},
		{Name: "AGE"}, {Name: "SELECTOR", Wide: true}},
}, defaultService, validateService, func(s *apiv1.Service, now time.Time) []string {
	sp := s.GetSpec()
	var ports []string
	for _, p := range sp.GetPorts() {
		e := strconv.Itoa(int(p.GetPort()))
		if p.GetNodePort() != 0 {
			e += ":" + strconv.Itoa(int(p.GetNodePort()))
		}
		ports = append(ports, e+"/"+p.GetProtocol())
	}
	ext := strings.Join(sp.GetExternalIPs(), ",")
	if sp.GetType() == "ExternalName" {
		ext = sp.GetExternalName()
	} else if sp.GetType() == "LoadBalancer" && ext == "" {
		for _, in := range s.GetStatus().GetLoadBalancer().GetIngress() {
			ext = in.GetIp() + in.GetHostname()
		}
		if ext == "" {
			ext = "<pending>"
		}
	}
	return []string{s.GetMetadata().GetName(), sp.GetType(), orNone(sp.GetClusterIP()), orNone(ext), joinOrNone(ports),
		age(s.GetMetadata().GetCreationTimestamp(), now), labelsString(sp.GetSelector())}
}, serviceHooks)

func defaultService(s *apiv1.Service) {
	if s.Spec == nil {
		s.Spec = &apiv1.ServiceSpec{}
	}
	sp := s.Spec
	if sp.Type == "" {
		sp.Type = "ClusterIP"
	}
	if sp.SessionAffinity == "" {
		sp.SessionAffinity = "None"
	}
	if sp.SessionAffinity == "ClientIP" {
		if sp.SessionAffinityConfig == nil {
			sp.SessionAffinityConfig = &apiv1.SessionAffinityConfig{}
		}
		if sp.SessionAffinityConfig.ClientIP == nil {
			sp.SessionAffinityConfig.ClientIP = &apiv1.ClientIPConfig{}
		}
		if sp.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil {
			sp.SessionAffinityConfig.ClientIP.TimeoutSeconds = ptr[int32](10800)
		}
	}
	for _, p := range sp.Ports {
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
		if p.TargetPort == "" || p.TargetPort == "0" {
			p.TargetPort = strconv.Itoa(int(p.Port))
		}
	}
	if sp.Type == "NodePort" || sp.Type == "LoadBalancer" {
		if sp.ExternalTrafficPolicy == "" {
			sp.ExternalTrafficPolicy = "Cluster"
		}
	}
	if sp.Type != "ExternalName" && sp.InternalTrafficPolicy == nil {
		sp.InternalTrafficPolicy = ptr("Cluster")
	}
	if sp.Type == "LoadBalancer" && sp.AllocateLoadBalancerNodePorts == nil {
		sp.AllocateLoadBalancerNodePorts = ptr(true)
	}
}

// ReservedClusterIPs are the ClusterIPs of the Services the cluster keeps
// itself, by address, with the one Service that may hold each
// (namespace/name): the kubernetes Service at the first address of the
// default Service range and the cluster DNS Service at 10.96.0.10. The
// ClusterIP allocator (controllers/serviceip) never hands them out.
var ReservedClusterIPs = map[string]string{KubernetesServiceIP: "default/kubernetes", ClusterDNSIP: "kube-system/kube-dns"}

// KubernetesServiceIP is the kubernetes Service's ClusterIP (the API as pods
// reach it) and ClusterDNSIP the cluster DNS Service's, in the default
// Service range.
const (
	KubernetesServiceIP = "10.96.0.1"
	ClusterDNSIP        = "10.96.0.10"
)

func validateService(s *apiv1.Service) FieldErrors {
	sp := s.GetSpec()
	if sp == nil {
		return FieldErrors{Required("spec", "")}
	}
	var errs FieldErrors
	self := s.GetMetadata().GetNamespace() + "/" + s.GetMetadata().GetName()
	for i, ip := range append([]string{sp.GetClusterIP()}, sp.GetClusterIPs()...) {
		if owner, ok := ReservedClusterIPs[ip]; ok && owner != self {
			path := "spec.clusterIP"
			if i > 0 {
				path = idx("spec.clusterIPs", i-1)
			}
			errs = append(errs, Invalid(path, ip, "is reserved for the Service "+owner+"; leave it empty to get a free address"))
			break
		}
	}
	errs = append(errs, oneOf("spec.type", sp.GetType(), serviceTypes...)...)
	if sp.GetSessionAffinity() != "" {
		errs = append(errs, oneOf("spec.sessionAffinity", sp.GetSessionAffinity(), "None", "ClientIP")...)
	}
	if t := sp.GetSessionAffinityConfig().GetClientIP(); t != nil && t.TimeoutSeconds != nil && (*t.TimeoutSeconds <= 0 || *t.TimeoutSeconds > 86400) {
		errs = append(errs, Invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", *t.TimeoutSeconds, "must be 1-86400"))
	}
	headless := sp.GetClusterIP() == "None"
	if ip := sp.GetClusterIP(); ip != "" && !headless {
		errs = append(errs, validateIP("spec.clusterIP", ip)...)
	}
	for i, ip := range sp.GetClusterIPs() {
		if ip != "None" {
			errs = append(errs, validateIP(idx("spec.clusterIPs", i), ip)...)
		}
	}
	for i, ip := range sp.GetExternalIPs() {
		errs = append(errs, validateIP(idx("spec.externalIPs", i), ip)...)
	}
	if sp.GetType() == "ExternalName" {
		if sp.GetExternalName() == "" {
			errs = append(errs, Required("spec.externalName", "required for type ExternalName"))
		} else {
			errs = append(errs, check("spec.externalName", sp.GetExternalName(), IsDNS1123Subdomain(strings.TrimSuffix(sp.GetExternalName(), ".")))...)
		}
	} else if len(sp.GetPorts()) == 0 && !headless {
		errs = append(errs, Required("spec.ports", "a Service needs at least one port"))
	}
	errs = append(errs, validateLabels(sp.GetSelector(), "spec.selector")...)
	names := map[string]bool{}
	seen := map[string]bool{}
	nodePortAllowed := sp.GetType() == "NodePort" || sp.GetType() == "LoadBalancer"
	for i, p := range sp.GetPorts() {
		pp := idx("spec.ports", i)
		if len(sp.GetPorts()) > 1 && p.GetName() == "" {
			errs = append(errs, Required(pp+".name", "must be set when a Service has more than one port"))
		}
		if p.GetName() != "" {
			errs = append(errs, check(pp+".name", p.GetName(), IsDNS1123Label(p.GetName()))...)
			if names[p.GetName()] {
				errs = append(errs, Duplicate(pp+".name", p.GetName()))
			}
			names[p.GetName()] = true
		}
		errs = append(errs, validatePort(pp+".port", p.GetPort())...)
		if p.GetProtocol() != "" {
			errs = append(errs, oneOf(pp+".protocol", p.GetProtocol(), "TCP", "UDP", "SCTP")...)
		}
		if p.GetTargetPort() != "" {
			errs = append(errs, validateIntOrStringPort(pp+".targetPort", p.GetTargetPort())...)
		}
		if np := p.GetNodePort(); np != 0 {
			if !nodePortAllowed {
				errs = append(errs, Forbidden(pp+".nodePort", "may only be set when type is NodePort or LoadBalancer"))
			} else if np < NodePortMin || np > NodePortMax {
				errs = append(errs, Invalid(pp+".nodePort", np, fmt.Sprintf("must be in the node port range %d-%d", NodePortMin, NodePortMax)))
			}
		}
		k := fmt.Sprintf("%d/%s", p.GetPort(), p.GetProtocol())
		if seen[k] {
			errs = append(errs, Duplicate(pp, k))
		}
		seen[k] = true
	}
	if p := sp.GetExternalTrafficPolicy(); p != "" {
		if !nodePortAllowed {
			errs = append(errs, Forbidden("spec.externalTrafficPolicy", "may only be set when type is NodePort or LoadBalancer"))
		} else {
			errs = append(errs, oneOf("spec.externalTrafficPolicy", p, "Cluster", "Local")...)
		}
	}
	if p := sp.InternalTrafficPolicy; p != nil {
		errs = append(errs, oneOf("spec.internalTrafficPolicy", *p, "Cluster", "Local")...)
	}
	return errs
}

var _ = define(Kind{
	Name: "Endpoints", Plural: "endpoints", Singular: "endpoints", ShortNames: []string{"ep"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.Endpoints{} },
	columns:   []Column{{Name: "NAME"}, {Name: "ENDPOINTS"}, {Name: "AGE"}},
}, func(e *apiv1.Endpoints) {
	for _, s := range e.Subsets {
		for _, p := range s.Ports {
			if p.Protocol == "" {
				p.Protocol = "TCP"
			}
		}
	}
}, func(e *apiv1.Endpoints) FieldErrors {
	var errs FieldErrors
	for i, s := range e.GetSubsets() {
		sp := idx("subsets", i)
		for field, addrs := range map[string][]*apiv1.EndpointAddress{"addresses": s.GetAddresses(), "notReadyAddresses": s.GetNotReadyAddresses()} {
			for j, a := range addrs {
				errs = append(errs, validateIP(idx(sp+"."+field, j)+".ip", a.GetIp())...)
			}
		}
		for j, p := range s.GetPorts() {
			pp := idx(sp+".ports", j)
			errs = append(errs, validatePort(pp+".port", p.GetPort())...)
			if p.GetProtocol() != "" {
				errs = append(errs, oneOf(pp+".protocol", p.GetProtocol(), "TCP", "UDP", "SCTP")...)
			}
			if len(s.GetPorts()) > 1 && p.GetName() == "" {
				errs = append(errs, Required(pp+".name", "must be set when a subset has more than one port"))
			}
		}
	}
	return errs
}, func(e *apiv1.Endpoints, now time.Time) []string {
	var eps []string
	for _, s := range e.GetSubsets() {
		for _, a := range s.GetAddresses() {
			if len(s.GetPorts()) == 0 {
				eps = append(eps, a.GetIp())
			}
			for _, p := range s.GetPorts() {
				eps = append(eps, fmt.Sprintf("%s:%d", a.GetIp(), p.GetPort()))
			}
		}
	}
	cell := joinOrNone(eps)
	if len(eps) > 3 {
		cell = strings.Join(eps[:3], ",") + fmt.Sprintf(" + %d more...", len(eps)-3)
	}
	return []string{e.GetMetadata().GetName(), cell, age(e.GetMetadata().GetCreationTimestamp(), now)}
})

func validateConfigKeys[V any](m map[string]V, path string) FieldErrors {
	var errs FieldErrors
	for _, k := range sortedKeys(m) {
		if len(k) > 253 || !configKeyRE.MatchString(k) || k == "." || k == ".." || strings.HasPrefix(k, "..") {
			errs = append(errs, Invalid(key(path, k), k, "a valid key must consist of alphanumeric characters, '-', '_' or '.'"))
		}
	}
	return errs
}

var _ = define(Kind{
	Name: "ConfigMap", Plural: "configmaps", Singular: "configmap", ShortNames: []string{"cm"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.ConfigMap{} },
	columns:   []Column{{Name: "NAME"}, {Name: "DATA"}, {Name: "AGE"}},
}, nil, func(c *apiv1.ConfigMap) FieldErrors {
	errs := validateConfigKeys(c.GetData(), "data")
	errs = append(errs, validateConfigKeys(c.GetBinaryData(), "binaryData")...)
	size := 0
	for k, v := range c.GetData() {
		size += len(v)
		if _, dup := c.GetBinaryData()[k]; dup {
			errs = append(errs, Duplicate(key("binaryData", k), k))
		}
	}
	for _, v := range c.GetBinaryData() {
		size += len(v)
	}
	if size > 1<<20 {
		errs = append(errs, Invalid("data", fmt.Sprintf("%d bytes", size), "must have at most 1048576 bytes"))
	}
	return errs
}, func(c *apiv1.ConfigMap, now time.Time) []string {
	return []string{c.GetMetadata().GetName(), strconv.Itoa(len(c.GetData()) + len(c.GetBinaryData())), age(c.GetMetadata().GetCreationTimestamp(), now)}
}, Hooks[*apiv1.ConfigMap]{QuotaCountsPlural: true})

var _ = define(Kind{
	Name: "Secret", Plural: "secrets", Singular: "secret",
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.Secret{} },
	columns:   []Column{{Name: "NAME"}, {Name: "TYPE"}, {Name: "DATA"}, {Name: "AGE"}},
}, func(s *apiv1.Secret) {
	if s.Type == "" {
		s.Type = "Opaque"
	}
	// stringData is write-only: Kubernetes merges it into data on write.
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	}
}, func(s *apiv1.Secret) FieldErrors {
	errs := validateConfigKeys(s.GetData(), "data")
	errs = append(errs, validateConfigKeys(s.GetStringData(), "stringData")...)
	has := func(k string) bool { _, a := s.GetData()[k]; _, b := s.GetStringData()[k]; return a || b }
	switch s.GetType() {
	case "kubernetes.io/tls":
		for _, k := range []string{"tls.crt", "tls.key"} {
			if !has(k) {
				errs = append(errs, Required(key("data", k), "required for type kubernetes.io/tls"))
			}
		}
	case "kubernetes.io/dockerconfigjson":
		if !has(".dockerconfigjson") {
			errs = append(errs, Required("data[.dockerconfigjson]", "required for type kubernetes.io/dockerconfigjson"))
		}
	case "kubernetes.io/basic-auth":
		if !has("username") && !has("password") {
			errs = append(errs, Required("data[username]", "username or password is required for type kubernetes.io/basic-auth"))
		}
	}
	return errs
}, func(s *apiv1.Secret, now time.Time) []string {
	return []string{s.GetMetadata().GetName(), s.GetType(), strconv.Itoa(len(s.GetData())), age(s.GetMetadata().GetCreationTimestamp(), now)}
}, Hooks[*apiv1.Secret]{QuotaCountsPlural: true})

var _ = define(Kind{
	Name: "ReplicationController", Plural: "replicationcontrollers", Singular: "replicationcontroller", ShortNames: []string{"rc"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.ReplicationController{} },
	columns: []Column{{Name: "NAME"}, {Name: "DESIRED"}, {Name: "CURRENT"}, {Name: "READY"}, {Name: "AGE"},
		{Name: "CONTAINERS", Wide: true}, {Name: "IMAGES", Wide: true}, {Name: "SELECTOR", Wide: true}},
}, func(rc *apiv1.ReplicationController) {
	if rc.Spec == nil {
		rc.Spec = &apiv1.ReplicationControllerSpec{}
	}
	if rc.Spec.Replicas == nil {
		rc.Spec.Replicas = ptr[int32](1)
	}
	tl := rc.Spec.GetTemplate().GetMetadata().GetLabels()
	if len(rc.Spec.Selector) == 0 && len(tl) > 0 {
		rc.Spec.Selector = cloneMap(tl)
	}
	if md := Meta(rc); len(md.Labels) == 0 && len(tl) > 0 {
		md.Labels = cloneMap(tl)
	}
	if rc.Spec.Template != nil {
		defaultPodSpec(rc.Spec.Template.Spec)
	}
}, func(rc *apiv1.ReplicationController) FieldErrors {
	sp := rc.GetSpec()
	if sp == nil {
		return FieldErrors{Required("spec", "")}
	}
	errs := validateNonNegative32("spec.replicas", sp.Replicas)
	errs = append(errs, validateNonNegative32("spec.minReadySeconds", &sp.MinReadySeconds)...)
	if len(sp.GetSelector()) == 0 {
		errs = append(errs, Required("spec.selector", ""))
	}
	errs = append(errs, validateLabels(sp.GetSelector(), "spec.selector")...)
	errs = append(errs, validatePodTemplate(sp.GetTemplate(), "spec.template", "Always")...)
	if sp.GetTemplate() != nil && len(sp.GetSelector()) > 0 &&
		!SelectorMatches(&apiv1.LabelSelector{MatchLabels: sp.GetSelector()}, sp.GetTemplate().GetMetadata().GetLabels()) {
		errs = append(errs, Invalid("spec.template.metadata.labels", labelsString(sp.GetTemplate().GetMetadata().GetLabels()),
			"selector does not match template labels (selector "+labelsString(sp.GetSelector())+")"))
	}
	return errs
}, func(rc *apiv1.ReplicationController, now time.Time) []string {
	return replicaRow(rc.GetMetadata(), rc.Spec.GetReplicas(), rc.GetStatus().GetReplicas(), rc.GetStatus().GetReadyReplicas(),
		rc.GetSpec().GetTemplate(), labelsString(rc.GetSpec().GetSelector()), now)
}, Hooks[*apiv1.ReplicationController]{
	PodTemplate:       func(rc *apiv1.ReplicationController) *apiv1.PodTemplateSpec { return rc.GetSpec().GetTemplate() },
	Replicas:          func(rc *apiv1.ReplicationController) *int32 { return rc.GetSpec().Replicas },
	QuotaCountsPlural: true,
})

func replicaRow(md *apiv1.ObjectMeta, desired, current, ready int32, t *apiv1.PodTemplateSpec, selector string, now time.Time) []string {
	names, images := containerCells(t)
	return []string{md.GetName(), strconv.Itoa(int(desired)), strconv.Itoa(int(current)), strconv.Itoa(int(ready)),
		age(md.GetCreationTimestamp(), now), names, images, selector}
}

func containerCells(t *apiv1.PodTemplateSpec) (names, images string) {
	var n, i []string
	for _, c := range t.GetSpec().GetContainers() {
		n = append(n, c.GetName())
		i = append(i, c.GetImage())
	}
	return joinOrNone(n), joinOrNone(i)
}

func cloneMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

var _ = define(Kind{
	Name: "ResourceQuota", Plural: "resourcequotas", Singular: "resourcequota", ShortNames: []string{"quota"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.ResourceQuota{} },
	columns:   []Column{{Name: "NAME"}, {Name: "AGE"}, {Name: "REQUEST"}, {Name: "LIMIT"}},
}, nil, func(q *apiv1.ResourceQuota) FieldErrors {
	errs := validateQuantities(q.GetSpec().GetHard(), "spec.hard")
	for i, s := range q.GetSpec().GetScopes() {
		errs = append(errs, oneOf(idx("spec.scopes", i), s, "Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass")...)
	}
	return errs
}, func(q *apiv1.ResourceQuota, now time.Time) []string {
	var req, lim []string
	for _, k := range sortedKeys(q.GetSpec().GetHard()) {
		cell := fmt.Sprintf("%s: %s/%s", k, orZero(q.GetStatus().GetUsed()[k]), q.GetSpec().GetHard()[k])
		if strings.HasPrefix(k, "limits.") {
			lim = append(lim, cell)
		} else {
			req = append(req, cell)
		}
	}
	return []string{q.GetMetadata().GetName(), age(q.GetMetadata().GetCreationTimestamp(), now), strings.Join(req, ", "), strings.Join(lim, ", ")}
}, Hooks[*apiv1.ResourceQuota]{QuotaCountsPlural: true})

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

var _ = define(Kind{
	Name: "LimitRange", Plural: "limitranges", Singular: "limitrange", ShortNames: []string{"limits"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.LimitRange{} },
	columns:   []Column{{Name: "NAME"}, {Name: "CREATED AT"}},
}, func(l *apiv1.LimitRange) {
	// SetDefaults_LimitRangeItem: a container's default limit is its max,
	// its default request its default limit.
	for _, it := range l.GetSpec().GetLimits() {
		if it.Type != "Container" {
			continue
		}
		for k, v := range it.Max {
			if _, ok := it.Default[k]; !ok {
				if it.Default == nil {
					it.Default = map[string]string{}
				}
				it.Default[k] = v
			}
		}
		for k, v := range it.Default {
			if _, ok := it.DefaultRequest[k]; !ok {
				if it.DefaultRequest == nil {
					it.DefaultRequest = map[string]string{}
				}
				it.DefaultRequest[k] = v
			}
		}
	}
}, func(l *apiv1.LimitRange) FieldErrors {
	var errs FieldErrors
	for i, it := range l.GetSpec().GetLimits() {
		p := idx("spec.limits", i)
		errs = append(errs, oneOf(p+".type", it.GetType(), "Container", "Pod", "PersistentVolumeClaim")...)
		for name, m := range map[string]map[string]string{"max": it.GetMax(), "min": it.GetMin(), "default": it.GetDefault(),
			"defaultRequest": it.GetDefaultRequest(), "maxLimitRequestRatio": it.GetMaxLimitRequestRatio()} {
			errs = append(errs, validateQuantities(m, p+"."+name)...)
		}
		for res, minV := range it.GetMin() {
			mn, err1 := ParseQuantity(minV)
			mx, err2 := ParseQuantity(it.GetMax()[res])
			if err1 == nil && err2 == nil && it.GetMax()[res] != "" && mn.Cmp(mx) > 0 {
				errs = append(errs, Invalid(key(p+".min", res), minV, "must be less than or equal to max "+it.GetMax()[res]))
			}
		}
		if it.GetType() == "Pod" && (len(it.GetDefault()) > 0 || len(it.GetDefaultRequest()) > 0) {
			errs = append(errs, Forbidden(p+".default", "may not be set for type Pod"))
		}
	}
	return errs
}, func(l *apiv1.LimitRange, now time.Time) []string {
	return []string{l.GetMetadata().GetName(), l.GetMetadata().GetCreationTimestamp()}
})

var _ = define(Kind{
	Name: "Event", Plural: "events", Singular: "event", ShortNames: []string{"ev"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.Event{} },
	columns: []Column{{Name: "LAST SEEN"}, {Name: "TYPE"}, {Name: "REASON"}, {Name: "OBJECT"}, {Name: "MESSAGE"},
		{Name: "NAME", Wide: true}, {Name: "COUNT", Wide: true}},
}, func(e *apiv1.Event) {
	if e.Type == "" {
		e.Type = "Normal"
	}
	if e.Count == 0 {
		e.Count = 1
	}
}, func(e *apiv1.Event) FieldErrors {
	var errs FieldErrors
	io := e.GetInvolvedObject()
	if io.GetKind() == "" {
		errs = append(errs, Required("involvedObject.kind", ""))
	}
	if io.GetName() == "" {
		errs = append(errs, Required("involvedObject.name", ""))
	}
	if ns := io.GetNamespace(); ns != "" && e.GetMetadata().GetNamespace() != "" && ns != e.GetMetadata().GetNamespace() {
		errs = append(errs, Invalid("involvedObject.namespace", ns, "does not match event.namespace "+e.GetMetadata().GetNamespace()))
	}
	if e.GetType() != "" {
		errs = append(errs, oneOf("type", e.GetType(), "Normal", "Warning")...)
	}
	if e.GetCount() < 0 {
		errs = append(errs, Invalid("count", e.GetCount(), "must be greater than or equal to 0"))
	}
	return errs
}, func(e *apiv1.Event, now time.Time) []string {
	last := e.GetLastTimestamp()
	if last == "" {
		last = e.GetEventTime()
	}
	obj := strings.ToLower(e.GetInvolvedObject().GetKind()) + "/" + e.GetInvolvedObject().GetName()
	return []string{age(last, now), e.GetType(), e.GetReason(), obj, e.GetMessage(), e.GetMetadata().GetName(), strconv.Itoa(int(e.GetCount()))}
})
