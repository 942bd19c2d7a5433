package api

import (
	"bytes"
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// priorityAdmission resolves a new pod's spec.priorityClassName to
// spec.priority and spec.preemptionPolicy, as Kubernetes' Priority plugin
// does: a named class must exist (the write compares its revision); no name
// takes the globalDefault class if there is one, else priority 0. A pod
// that sets spec.priority itself must agree with its class. It also keeps
// at most one PriorityClass globalDefault.
type priorityAdmission struct {
	s       *Server
	classes *kinds.Kind
}

// globalDefaultTrue is PriorityClass.globalDefault = true on the wire
// (field 5, varint: tag 0x28, value 1).
var globalDefaultTrue = []byte{0x28, 0x01}

func newPriorityAdmission(s *Server) admissionPlugin {
	return &priorityAdmission{s: s, classes: s.kind("PriorityClass")}
}

func (*priorityAdmission) name() string { return "Priority" }

func (p *priorityAdmission) handles(op admissionOp, k *kinds.Kind) bool {
	if k == p.classes {
		return op == opCreate || op == opUpdate
	}
	return op == opCreate && k.Namespaced && k.RunsContainers()
}

func (p *priorityAdmission) admit(ctx context.Context, r *admissionRequest) error {
	if r.kind == p.classes {
		return nil
	}
	spec := r.kind.PodSpec(r.obj)
	if spec == nil {
		return nil
	}
	var class *apiv1.PriorityClass
	if name := spec.GetPriorityClassName(); name != "" {
		st, err := p.s.get(ctx, p.classes, "", name, true)
		if err != nil {
			return err
		}
		if st == nil {
			return fmt.Errorf("%w: spec.priorityClassName: no PriorityClass with name %q was found", ErrInvalid, name)
		}
		r.txn.expect(p.classes.Key("", name), st.rev)
		class = st.obj.(*apiv1.PriorityClass)
	} else {
		// Decode only classes whose bytes can hold globalDefault: true
		// (field 5, varint 1): this runs for every new pod.
		all, _, err := p.s.listMatching(ctx, p.classes, "", true, func(v []byte) bool { return bytes.Contains(v, globalDefaultTrue) })
		if err != nil {
			return err
		}
		for _, st := range all {
			if pc := st.obj.(*apiv1.PriorityClass); pc.GetGlobalDefault() {
				class = pc
				break
			}
		}
	}
	value, policy := int32(0), kinds.PreemptLowerPriority
	if class != nil {
		value, policy = class.GetValue(), class.GetPreemptionPolicy()
		if policy == "" {
			policy = kinds.PreemptLowerPriority
		}
	}
	if spec.Priority != nil && spec.GetPriority() != value {
		return fmt.Errorf("%w: spec.priority: %d: the integer value of priority (%d) must not be provided in pod spec; the priority admission controller computed %d from the given PriorityClass name",
			ErrInvalid, spec.GetPriority(), spec.GetPriority(), value)
	}
	if spec.Priority != nil && spec.GetPreemptionPolicy() == policy {
		return nil
	}
	r.obj = codec.Clone(r.obj)
	spec = r.kind.PodSpec(r.obj)
	spec.Priority = &value
	if class != nil {
		spec.PriorityClassName = class.GetMetadata().GetName()
	}
	spec.PreemptionPolicy = &policy
	return nil
}

// validate keeps at most one globalDefault class.
func (p *priorityAdmission) validate(ctx context.Context, r *admissionRequest) error {
	if r.kind != p.classes {
		return nil
	}
	pc := r.obj.(*apiv1.PriorityClass)
	if !pc.GetGlobalDefault() {
		return nil
	}
	all, _, err := p.s.listAll(ctx, p.classes, "", true)
	if err != nil {
		return err
	}
	for _, st := range all {
		other := st.obj.(*apiv1.PriorityClass)
		if other.GetGlobalDefault() && other.GetMetadata().GetName() != pc.GetMetadata().GetName() {
			return fmt.Errorf("%w: globalDefault: PriorityClass %q is already marked as default; only one default can exist",
				ErrInvalid, other.GetMetadata().GetName())
		}
		r.txn.expect(p.classes.Key("", other.GetMetadata().GetName()), st.rev)
	}
	return nil
}
