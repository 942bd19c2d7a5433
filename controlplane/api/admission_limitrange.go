package api

import (
	"context"
	"fmt"
	"strings"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// limitRanger applies the namespace's Container LimitRanges to a new
// object that runs containers (a Pod): default requests and limits, then
// min and max. The write compares every LimitRange it read.
type limitRanger struct {
	s          *Server
	limitRange *kinds.Kind
}

func newLimitRanger(s *Server) admissionPlugin {
	return &limitRanger{s: s, limitRange: s.kind("LimitRange")}
}

func (*limitRanger) name() string { return "LimitRanger" }

func (*limitRanger) handles(op admissionOp, k *kinds.Kind) bool {
	return op == opCreate && k.Namespaced && k.RunsContainers()
}

// admit defaults and checks r.obj; it copies the object before the first
// change (without a Container LimitRange the object goes on as it is).
func (p *limitRanger) admit(ctx context.Context, r *admissionRequest) error {
	md := r.obj.GetMetadata()
	lrs, _, err := p.s.listAll(ctx, p.limitRange, md.GetNamespace(), true)
	if err != nil {
		return err
	}
	var problems []string
	copied := false
	for _, st := range lrs {
		lmd := st.obj.GetMetadata()
		r.txn.expect(p.limitRange.Key(lmd.GetNamespace(), lmd.GetName()), st.rev)
		lr := st.obj.(*apiv1.LimitRange)
		for _, item := range lr.GetSpec().GetLimits() {
			if item.GetType() != "Container" {
				continue
			}
			if !copied {
				r.obj, copied = codec.Clone(r.obj), true
			}
			for ci, c := range r.kind.PodSpec(r.obj).GetContainers() {
				if c.Resources == nil {
					c.Resources = &apiv1.ResourceRequirements{}
				}
				res := c.Resources
				for name, v := range item.GetDefault() {
					if _, ok := res.Limits[name]; !ok {
						if res.Limits == nil {
							res.Limits = map[string]string{}
						}
						res.Limits[name] = v
					}
				}
				for name, v := range item.GetDefaultRequest() {
					if _, ok := res.Requests[name]; !ok {
						if res.Requests == nil {
							res.Requests = map[string]string{}
						}
						res.Requests[name] = v
					}
				}
				path := fmt.Sprintf("spec.containers[%d].resources", ci)
				for _, name := range sortedKeys(item.GetMax()) {
					if overMax(res.Limits[name], item.Max[name]) {
						problems = append(problems, fmt.Sprintf("%s.limits[%s]: maximum %s usage per Container is %s, but limit is %s (LimitRange %s)", path, name, name, item.Max[name], orUnset(res.Limits[name]), lmd.GetName()))
					}
				}
				for _, name := range sortedKeys(item.GetMin()) {
					if underMin(res.Requests[name], item.Min[name]) {
						problems = append(problems, fmt.Sprintf("%s.requests[%s]: minimum %s usage per Container is %s, but request is %s (LimitRange %s)", path, name, name, item.Min[name], orUnset(res.Requests[name]), lmd.GetName()))
					}
				}
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s %q is forbidden: %s", ErrQuotaExceeded, strings.ToLower(r.kind.Name), md.GetName(), strings.Join(problems, "; "))
	}
	return nil
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
