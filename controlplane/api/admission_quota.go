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

// resourceQuota charges a new namespaced object against every
// ResourceQuota of its namespace (refusing it over spec.hard) and refunds a
// removed one; the quotas' new usage is written in the object's own
// transaction, conditional on the quotas' revisions. It also sets a
// ResourceQuota's status (usage counted from the namespace's objects)
// when the quota is created or its hard limits change. What an object
// uses is its kind's business (kinds.Kind.QuotaUsage).
type resourceQuota struct {
	s     *Server
	quota *kinds.Kind
}

func newResourceQuota(s *Server) admissionPlugin {
	return &resourceQuota{s: s, quota: s.kind("ResourceQuota")}
}

func (*resourceQuota) name() string { return "ResourceQuota" }

func (p *resourceQuota) handles(op admissionOp, k *kinds.Kind) bool {
	switch op {
	case opCreate, opDelete:
		return k.Namespaced
	case opUpdate:
		return k == p.quota
	}
	return false
}

// admit sets the status of a ResourceQuota being created or given new
// hard limits, on a copy (a retry recounts from what the client sent).
func (p *resourceQuota) admit(ctx context.Context, r *admissionRequest) error {
	if r.kind != p.quota || r.op == opDelete || (r.op == opUpdate && kinds.SpecEqual(r.old, r.obj)) {
		return nil
	}
	q := codec.Clone(r.obj.(*apiv1.ResourceQuota))
	if err := p.initStatus(ctx, q); err != nil {
		return err
	}
	r.obj = q
	return nil
}

// validate charges (create) or refunds (delete) r.obj.
func (p *resourceQuota) validate(ctx context.Context, r *admissionRequest) error {
	switch r.op {
	case opCreate:
		return p.charge(ctx, r, +1)
	case opDelete:
		return p.charge(ctx, r, -1)
	}
	return nil
}

// charge adds (sign +1) or subtracts (-1) r.obj's usage to every quota of
// its namespace that limits any of it. Charges are checked against
// spec.hard; the adjusted quotas go into r.txn.
func (p *resourceQuota) charge(ctx context.Context, r *admissionRequest, sign int) error {
	k, obj := r.kind, r.obj
	ns := obj.GetMetadata().GetNamespace()
	qs, _, err := p.s.listAll(ctx, p.quota, ns, true)
	if err != nil {
		return err
	}
	if len(qs) == 0 {
		return nil
	}
	u := k.QuotaUsage(obj)
	for _, st := range qs {
		q := st.obj.(*apiv1.ResourceQuota)
		if k == p.quota && q.GetMetadata().GetName() == obj.GetMetadata().GetName() {
			continue // a quota does not count itself
		}
		hard := q.GetSpec().GetHard()
		touched := false
		var exceeded, requested, used, limited, missing []string
		for _, name := range sortedKeys(hard) {
			delta, charged := u[name]
			if !charged {
				if sign > 0 && slices.Contains(k.QuotaRequired(), name) {
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
			qmd := q.GetMetadata()
			key := p.quota.Key(qmd.GetNamespace(), qmd.GetName())
			b, err := encode(q)
			if err != nil {
				return err
			}
			r.txn.expect(key, st.rev)
			r.txn.put(key, b)
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

// initStatus sets a ResourceQuota's status: hard, and used as counted
// from the namespace's current objects.
func (p *resourceQuota) initStatus(ctx context.Context, q *apiv1.ResourceQuota) error {
	ns := q.GetMetadata().GetNamespace()
	hard := q.GetSpec().GetHard()
	used := map[string]kinds.Quantity{}
	for name := range hard {
		used[name] = kinds.NewQuantity(0)
	}
	for _, k := range p.s.reg.Kinds() {
		if !k.Namespaced || !chargesAny(k, hard) {
			continue
		}
		objs, _, err := p.s.listAll(ctx, k, ns, false)
		if err != nil {
			return err
		}
		for _, st := range objs {
			if k == p.quota && st.obj.GetMetadata().GetName() == q.GetMetadata().GetName() {
				continue
			}
			for name, v := range k.QuotaUsage(st.obj) {
				if cur, ok := used[name]; ok {
					used[name] = cur.Add(v)
				}
			}
		}
	}
	if chargesAny(p.quota, hard) {
		for name, v := range p.quota.QuotaUsage(q) {
			if cur, ok := used[name]; ok {
				used[name] = cur.Add(v)
			}
		}
	}
	q.Status = &apiv1.ResourceQuotaStatus{Hard: map[string]string{}, Used: map[string]string{}}
	for name, v := range hard {
		q.Status.Hard[name] = v
		q.Status.Used[name] = used[name].String()
	}
	return nil
}

// chargesAny reports whether any of hard's names counts objects of kind k.
func chargesAny(k *kinds.Kind, hard map[string]string) bool {
	for name := range hard {
		if k.QuotaCharges(name) {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
