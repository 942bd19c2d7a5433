package api

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// admission is what a write into a namespace was admitted against; its
// compares go into the write's txn so the write fails (and is redone) if
// any of it changed in between. Admission reads this node's state after one
// Linearize per attempt (see create): the compares catch anything that
// moved, so further read-index rounds would only add latency.
type admission struct {
	nsKey string
	nsRev int64
	// quotas are the namespace's ResourceQuotas with usage already adjusted
	// for this write, to be written back in the same txn.
	quotas []*stored
	// limitRanges were read to default and check the object.
	limitRanges []*stored
}

func (a *admission) addTo(t *txnBuilder, s *Server) error {
	if a == nil {
		return nil
	}
	if a.nsKey != "" {
		t.expect(a.nsKey, a.nsRev)
	}
	for _, lr := range a.limitRanges {
		t.expect(s.kind("LimitRange").Key(lr.obj.GetMetadata().GetNamespace(), lr.obj.GetMetadata().GetName()), lr.rev)
	}
	qk := s.kind("ResourceQuota")
	for _, q := range a.quotas {
		md := q.obj.GetMetadata()
		key := qk.Key(md.GetNamespace(), md.GetName())
		t.expect(key, q.rev)
		b, err := encode(q.obj)
		if err != nil {
			return err
		}
		t.put(key, b)
	}
	return nil
}

// kind returns a built-in kind that must exist.
func (s *Server) kind(name string) *kinds.Kind {
	k, ok := s.reg.ForKind(name)
	if !ok {
		panic("kind " + name + " is not registered")
	}
	return k
}

// admitNamespace checks the namespace of a new object exists and is not
// terminating.
func (s *Server) admitNamespace(ctx context.Context, k *kinds.Kind, ns string, a *admission) error {
	if !k.Namespaced {
		return nil
	}
	nk := s.kind("Namespace")
	st, err := s.get(ctx, nk, "", ns, true)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("%w: namespace %q not found", ErrNotFound, ns)
	}
	n := st.obj.(*apiv1.Namespace)
	if n.GetMetadata().GetDeletionTimestamp() != "" || n.GetStatus().GetPhase() == "Terminating" {
		return fmt.Errorf("%w: unable to create new content in namespace %q because it is being terminated", ErrNamespaceTerminating, ns)
	}
	a.nsKey, a.nsRev = nk.Key("", ns), st.rev
	return nil
}

// admitLimitRanges checks a new pod against the namespace's LimitRanges
// and returns it with their container defaults applied: a copy when there
// is a Container LimitRange (pod itself stays as sent), else pod.
func (s *Server) admitLimitRanges(ctx context.Context, pod *apiv1.Pod, a *admission) (*apiv1.Pod, error) {
	lrs, _, err := s.listAll(ctx, s.kind("LimitRange"), pod.GetMetadata().GetNamespace(), true)
	if err != nil {
		return nil, err
	}
	a.limitRanges = lrs
	var problems []string
	copied := false
	for _, st := range lrs {
		lr := st.obj.(*apiv1.LimitRange)
		for _, item := range lr.GetSpec().GetLimits() {
			if item.GetType() != "Container" {
				continue
			}
			if !copied {
				pod, copied = codec.Clone(pod), true
			}
			for ci, c := range pod.GetSpec().GetContainers() {
				if c.Resources == nil {
					c.Resources = &apiv1.ResourceRequirements{}
				}
				r := c.Resources
				for res, v := range item.GetDefault() {
					if _, ok := r.Limits[res]; !ok {
						if r.Limits == nil {
							r.Limits = map[string]string{}
						}
						r.Limits[res] = v
					}
				}
				for res, v := range item.GetDefaultRequest() {
					if _, ok := r.Requests[res]; !ok {
						if r.Requests == nil {
							r.Requests = map[string]string{}
						}
						r.Requests[res] = v
					}
				}
				path := fmt.Sprintf("spec.containers[%d].resources", ci)
				for _, res := range sortedKeys(item.GetMax()) {
					if overMax(r.Limits[res], item.Max[res]) {
						problems = append(problems, fmt.Sprintf("%s.limits[%s]: maximum %s usage per Container is %s, but limit is %s (LimitRange %s)", path, res, res, item.Max[res], orUnset(r.Limits[res]), lr.GetMetadata().GetName()))
					}
				}
				for _, res := range sortedKeys(item.GetMin()) {
					if underMin(r.Requests[res], item.Min[res]) {
						problems = append(problems, fmt.Sprintf("%s.requests[%s]: minimum %s usage per Container is %s, but request is %s (LimitRange %s)", path, res, res, item.Min[res], orUnset(r.Requests[res]), lr.GetMetadata().GetName()))
					}
				}
			}
		}
	}
	if pod.Spec != nil && pod.Status != nil {
		// From the spec alone: the same on every attempt.
		pod.Status.QosClass = kinds.QOSClass(pod.Spec)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: pod %q is forbidden: %s", ErrQuotaExceeded, pod.GetMetadata().GetName(), strings.Join(problems, "; "))
	}
	return pod, nil
}

func orUnset(v string) string {
	if v == "" {
		return "unset"
	}
	return v
}

// overMax: a limit must be set and at most max.
func overMax(v, max string) bool {
	if v == "" {
		return true
	}
	return cmpQuantity(v, max) > 0
}

// underMin: a request must be set and at least min.
func underMin(v, min string) bool {
	if v == "" {
		return true
	}
	return cmpQuantity(v, min) < 0
}

func cmpQuantity(a, b string) int {
	qa, err1 := kinds.ParseQuantity(a)
	qb, err2 := kinds.ParseQuantity(b)
	if err1 != nil || err2 != nil {
		return 0
	}
	return qa.Cmp(qb)
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// usage is what one object counts against a ResourceQuota: object counts
// ("pods", "count/deployments.apps") and, for pods, summed requests and
// limits ("requests.cpu", "limits.memory"; "cpu"/"memory" mean requests).
func usage(k *kinds.Kind, obj kinds.Object) map[string]kinds.Quantity {
	u := map[string]kinds.Quantity{"count/" + k.Resource(): kinds.NewQuantity(1)}
	switch k.Name {
	case "Pod", "Service", "ConfigMap", "Secret", "ReplicationController", "ResourceQuota":
		u[k.Plural] = kinds.NewQuantity(1)
	}
	if k.Name == "Service" {
		svc := obj.(*apiv1.Service)
		switch svc.GetSpec().GetType() {
		case "NodePort":
			u["services.nodeports"] = kinds.NewQuantity(int64(len(svc.GetSpec().GetPorts())))
		case "LoadBalancer":
			u["services.loadbalancers"] = kinds.NewQuantity(1)
			u["services.nodeports"] = kinds.NewQuantity(int64(len(svc.GetSpec().GetPorts())))
		}
	}
	pod, ok := obj.(*apiv1.Pod)
	if !ok {
		return u
	}
	sum := func(which string, pick func(*apiv1.ResourceRequirements) map[string]string) {
		totals := map[string]kinds.Quantity{}
		for _, c := range pod.GetSpec().GetContainers() {
			for res, v := range pick(c.GetResources()) {
				if q, err := kinds.ParseQuantity(v); err == nil {
					totals[res] = totals[res].Add(q)
				}
			}
		}
		// An init container runs alone: the pod needs the larger of it and
		// the sum of the app containers.
		for _, c := range pod.GetSpec().GetInitContainers() {
			for res, v := range pick(c.GetResources()) {
				if q, err := kinds.ParseQuantity(v); err == nil && q.Cmp(totals[res]) > 0 {
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
	return u
}

// computeResources are the quota names that need a value on every pod.
var computeResources = []string{"requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory"}

// admitQuota charges a new object (sign +1) or refunds a removed one (-1)
// against every ResourceQuota of its namespace. Charges are checked against
// spec.hard; the adjusted quotas go into a.quotas for the write's txn.
func (s *Server) admitQuota(ctx context.Context, k *kinds.Kind, obj kinds.Object, sign int, a *admission) error {
	if !k.Namespaced {
		return nil
	}
	ns := obj.GetMetadata().GetNamespace()
	qs, _, err := s.listAll(ctx, s.kind("ResourceQuota"), ns, true)
	if err != nil {
		return err
	}
	if len(qs) == 0 {
		return nil
	}
	u := usage(k, obj)
	for _, st := range qs {
		q := st.obj.(*apiv1.ResourceQuota)
		if k.Name == "ResourceQuota" && q.GetMetadata().GetName() == obj.GetMetadata().GetName() {
			continue
		}
		hard := q.GetSpec().GetHard()
		touched := false
		var exceeded, requested, used, limited, missing []string
		for _, name := range sortedKeys(hard) {
			delta, charged := u[name]
			if !charged {
				if sign > 0 && k.Name == "Pod" && slices.Contains(computeResources, name) {
					missing = append(missing, name)
				}
				continue
			}
			touched = true
			cur := quantityOf(q.GetStatus().GetUsed()[name])
			var next kinds.Quantity
			if sign > 0 {
				next = cur.Add(delta)
			} else {
				next = cur.Sub(delta)
				if next.Sign() < 0 {
					next = kinds.NewQuantity(0)
				}
			}
			if sign > 0 {
				h := quantityOf(hard[name])
				if next.Cmp(h) > 0 {
					exceeded = append(exceeded, name)
					requested = append(requested, name+"="+delta.String())
					used = append(used, name+"="+cur.String())
					limited = append(limited, name+"="+hard[name])
				}
			}
			if q.Status == nil {
				q.Status = &apiv1.ResourceQuotaStatus{}
			}
			if q.Status.Used == nil {
				q.Status.Used = map[string]string{}
			}
			q.Status.Used[name] = next.String()
		}
		if len(missing) > 0 {
			return fmt.Errorf("%w: %s %q is forbidden: failed quota: %s: must specify %s", ErrQuotaExceeded,
				strings.ToLower(k.Name), obj.GetMetadata().GetName(), q.GetMetadata().GetName(), strings.Join(missing, ","))
		}
		if len(exceeded) > 0 {
			return fmt.Errorf("%w: %s %q is forbidden: exceeded quota: %s, requested: %s, used: %s, limited: %s", ErrQuotaExceeded,
				strings.ToLower(k.Name), obj.GetMetadata().GetName(), q.GetMetadata().GetName(),
				strings.Join(requested, ","), strings.Join(used, ","), strings.Join(limited, ","))
		}
		if touched {
			a.quotas = append(a.quotas, st)
		}
	}
	return nil
}

func quantityOf(s string) kinds.Quantity {
	if s == "" {
		return kinds.NewQuantity(0)
	}
	q, err := kinds.ParseQuantity(s)
	if err != nil {
		return kinds.NewQuantity(0)
	}
	return q
}

// initQuotaStatus sets a ResourceQuota's status (hard, and used as counted
// from the namespace's current objects) when it is created or its hard
// limits change.
func (s *Server) initQuotaStatus(ctx context.Context, q *apiv1.ResourceQuota) error {
	ns := q.GetMetadata().GetNamespace()
	used := map[string]kinds.Quantity{}
	for name := range q.GetSpec().GetHard() {
		used[name] = kinds.NewQuantity(0)
	}
	for _, k := range s.reg.Kinds() {
		if !k.Namespaced || !quotaTracks(k, q.GetSpec().GetHard()) {
			continue
		}
		objs, _, err := s.listAll(ctx, k, ns, false)
		if err != nil {
			return err
		}
		for _, st := range objs {
			if k.Name == "ResourceQuota" && st.obj.GetMetadata().GetName() == q.GetMetadata().GetName() {
				continue
			}
			for name, v := range usage(k, st.obj) {
				if cur, ok := used[name]; ok {
					used[name] = cur.Add(v)
				}
			}
		}
	}
	if k := s.kind("ResourceQuota"); quotaTracks(k, q.GetSpec().GetHard()) {
		for name, v := range usage(k, q) {
			if cur, ok := used[name]; ok {
				used[name] = cur.Add(v)
			}
		}
	}
	q.Status = &apiv1.ResourceQuotaStatus{Hard: map[string]string{}, Used: map[string]string{}}
	for name, v := range q.GetSpec().GetHard() {
		q.Status.Hard[name] = v
		q.Status.Used[name] = used[name].String()
	}
	return nil
}

// quotaTracks reports whether any of hard's names counts objects of kind k.
func quotaTracks(k *kinds.Kind, hard map[string]string) bool {
	for name := range hard {
		if name == k.Plural || name == "count/"+k.Resource() {
			return true
		}
		if k.Name == "Pod" && (strings.HasPrefix(name, "requests.") || strings.HasPrefix(name, "limits.") || name == "cpu" || name == "memory") {
			return true
		}
		if k.Name == "Service" && strings.HasPrefix(name, "services.") {
			return true
		}
	}
	return false
}
