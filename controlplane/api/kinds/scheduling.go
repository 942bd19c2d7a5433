package kinds

import (
	"strconv"
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Priorities of the two system classes (Kubernetes' values) and the highest
// a user class may have.
const (
	SystemClusterCritical         = "system-cluster-critical"
	SystemNodeCritical            = "system-node-critical"
	SystemClusterCriticalPriority = 2000000000
	SystemNodeCriticalPriority    = 2000001000
	HighestUserPriority           = 1000000000
	// PreemptLowerPriority is the default preemptionPolicy; Never the other.
	PreemptLowerPriority = "PreemptLowerPriority"
)

var priorityClassKind = define(Kind{
	Name: "PriorityClass", Plural: "priorityclasses", Singular: "priorityclass", ShortNames: []string{"pc"},
	Group: "scheduling.k8s.io", APIVersions: []string{"scheduling.k8s.io/v1"},
	Retired:   map[string]string{"scheduling.k8s.io/v1beta1": "removed in Kubernetes 1.22", "scheduling.k8s.io/v1alpha1": "removed in Kubernetes 1.22"},
	newObject: func() Object { return &apiv1.PriorityClass{} },
	columns:   []Column{{Name: "NAME"}, {Name: "VALUE"}, {Name: "GLOBAL-DEFAULT"}, {Name: "AGE"}, {Name: "PREEMPTIONPOLICY", Wide: true}},
}, func(pc *apiv1.PriorityClass) {
	if pc.PreemptionPolicy == nil {
		pc.PreemptionPolicy = ptr(PreemptLowerPriority)
	}
}, validatePriorityClass, func(pc *apiv1.PriorityClass, now time.Time) []string {
	return []string{pc.GetMetadata().GetName(), strconv.Itoa(int(pc.GetValue())), strconv.FormatBool(pc.GetGlobalDefault()),
		age(pc.GetMetadata().GetCreationTimestamp(), now), pc.GetPreemptionPolicy()}
})

func init() {
	onUpdate(priorityClassKind, func(old, cur *apiv1.PriorityClass) FieldErrors {
		if old.GetValue() != cur.GetValue() {
			return FieldErrors{Invalid("value", cur.GetValue(), "field is immutable")}
		}
		return nil
	})
	registerBuiltinObjects(SystemPriorityClasses)
}

func validatePriorityClass(pc *apiv1.PriorityClass) FieldErrors {
	var errs FieldErrors
	name := pc.GetMetadata().GetName()
	if strings.HasPrefix(name, "system-") {
		want, ok := map[string]int32{SystemClusterCritical: SystemClusterCriticalPriority, SystemNodeCritical: SystemNodeCriticalPriority}[name]
		switch {
		case !ok:
			errs = append(errs, Invalid("metadata.name", name, `the prefix "system-" is reserved for the system priority classes`))
		case pc.GetValue() != want:
			errs = append(errs, Invalid("value", pc.GetValue(), "the system class "+name+" has value "+strconv.Itoa(int(want))))
		}
	} else if pc.GetValue() > HighestUserPriority {
		errs = append(errs, Invalid("value", pc.GetValue(), "must be at most 1000000000 (higher values are reserved for system classes)"))
	}
	if p := pc.PreemptionPolicy; p != nil {
		errs = append(errs, oneOf("preemptionPolicy", *p, PreemptLowerPriority, "Never")...)
	}
	return errs
}

// SystemPriorityClasses are the classes every cluster has from the start.
func SystemPriorityClasses() []Object {
	mk := func(name string, value int32, desc string) Object {
		pc := &apiv1.PriorityClass{Metadata: &apiv1.ObjectMeta{Name: name}, Value: value, Description: desc}
		SetTypeMeta(pc, "scheduling.k8s.io/v1", "PriorityClass")
		return pc
	}
	return []Object{
		mk(SystemClusterCritical, SystemClusterCriticalPriority, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
		mk(SystemNodeCritical, SystemNodeCriticalPriority, "Used for system critical pods that must not be moved from their current node."),
	}
}
