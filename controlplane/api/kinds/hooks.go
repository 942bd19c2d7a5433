package kinds

import (
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Hooks are a kind's own behaviour, in the manner of Kubernetes' registry
// strategies: the API server's generic create/update/delete path and ctl
// call them, and nothing outside the kind's file names the kind. Every hook
// is optional; an unset one means the kind has no such behaviour.
type Hooks[T Object] struct {
	// PrepareForCreate sets server-owned fields of a new object after
	// mutating admission (LimitRange defaults) and before validation.
	PrepareForCreate func(obj T)
	// PrepareForUpdate sets server-owned fields of obj replacing old,
	// before validation (not called for status writes).
	PrepareForUpdate func(old, obj T)
	// GracePeriod is how many seconds a deleted object may take to go
	// (requested: the caller's gracePeriodSeconds, may be nil). Above 0 the
	// object is only marked (deletionTimestamp) until someone deletes it
	// again with grace 0, as a node's agent does for its pods.
	GracePeriod func(obj T, requested *int64) int64
	// Terminate marks an object whose deletion waits for the server to
	// empty it (a Namespace: phase Terminating and its spec finalizer);
	// the server sets deletionTimestamp and starts the emptying.
	Terminate func(obj T)
	// PodSpec is the spec of the containers the object runs itself (Pod).
	PodSpec func(obj T) *apiv1.PodSpec
	// PodTemplate is the template of the pods a workload creates.
	PodTemplate func(obj T) *apiv1.PodTemplateSpec
	// Replicas is spec.replicas of a scalable kind (`ctl scale` patches
	// that field).
	Replicas func(obj T) *int32
	// QuotaCountsPlural: besides count/<resource>, objects count under the
	// bare plural ("pods", "services"), as Kubernetes does for some core kinds.
	QuotaCountsPlural bool
	// QuotaUsage adds what one object uses beyond its count to used
	// ("requests.cpu", "services.nodeports").
	QuotaUsage func(obj T, used map[string]Quantity)
	// QuotaCharges reports whether QuotaUsage may charge the quota name.
	QuotaCharges func(name string) bool
	// QuotaRequired are the quota names every new object must have a
	// value for when a quota limits them (a pod's cpu and memory).
	QuotaRequired []string
}

// hooks are a kind's Hooks with the type asserted once per call: a direct
// field call, no boxing.
type hooks struct {
	prepareCreate     func(Object)
	prepareUpdate     func(old, obj Object)
	gracePeriod       func(Object, *int64) int64
	terminate         func(Object)
	podSpec           func(Object) *apiv1.PodSpec
	podTemplate       func(Object) *apiv1.PodTemplateSpec
	replicas          func(Object) *int32
	quotaCountsPlural bool
	quotaUsage        func(Object, map[string]Quantity)
	quotaCharges      func(string) bool
	quotaRequired     []string
}

func (h Hooks[T]) untyped() hooks {
	out := hooks{quotaCountsPlural: h.QuotaCountsPlural, quotaCharges: h.QuotaCharges, quotaRequired: h.QuotaRequired}
	if f := h.PrepareForCreate; f != nil {
		out.prepareCreate = func(o Object) { f(o.(T)) }
	}
	if f := h.PrepareForUpdate; f != nil {
		out.prepareUpdate = func(old, o Object) { f(old.(T), o.(T)) }
	}
	if f := h.GracePeriod; f != nil {
		out.gracePeriod = func(o Object, requested *int64) int64 { return f(o.(T), requested) }
	}
	if f := h.Terminate; f != nil {
		out.terminate = func(o Object) { f(o.(T)) }
	}
	if f := h.PodSpec; f != nil {
		out.podSpec = func(o Object) *apiv1.PodSpec { return f(o.(T)) }
	}
	if f := h.PodTemplate; f != nil {
		out.podTemplate = func(o Object) *apiv1.PodTemplateSpec { return f(o.(T)) }
	}
	if f := h.Replicas; f != nil {
		out.replicas = func(o Object) *int32 { return f(o.(T)) }
	}
	if f := h.QuotaUsage; f != nil {
		out.quotaUsage = func(o Object, used map[string]Quantity) { f(o.(T), used) }
	}
	return out
}

// Spec is what Define needs beyond a kind's names: how to make, default,
// validate and print an object, and the kind's Hooks.
type Spec[T Object] struct {
	// New returns an empty object (required).
	New func() T
	// Defaults fills unset fields; Validate and ValidateUpdate check an
	// object (update: immutable fields). All optional.
	Defaults       func(T)
	Validate       func(T) FieldErrors
	ValidateUpdate func(old, cur T) FieldErrors
	// NameCheck validates metadata.name; nil means a DNS-1123 subdomain.
	NameCheck func(string) []string
	// Columns and Row are `ctl get`'s table; nil Row prints NAME and AGE.
	Columns []Column
	Row     func(T, time.Time) []string
	Hooks[T]
}

// Define makes a kind from its names and its Spec. A built-in kind is one
// file calling define (which also adds it to NewRegistry's kinds); a kind
// defined elsewhere is passed to NewRegistry.
func Define[T Object](names Kind, spec Spec[T]) *Kind {
	k := names
	if spec.New != nil {
		newT := spec.New
		k.newObject = func() Object { return newT() }
	}
	if k.newObject == nil {
		panic("kinds.Define " + k.Name + ": Spec.New is required")
	}
	if spec.Columns != nil {
		k.columns = spec.Columns
	}
	if spec.NameCheck != nil {
		k.nameCheck = spec.NameCheck
	}
	if k.nameCheck == nil {
		k.nameCheck = IsDNS1123Subdomain
	}
	if f := spec.Defaults; f != nil {
		k.defaults = func(o Object) { f(o.(T)) }
	}
	if f := spec.Validate; f != nil {
		k.validate = func(o Object) FieldErrors { return f(o.(T)) }
	}
	if f := spec.ValidateUpdate; f != nil {
		k.validateUpd = func(o, c Object) FieldErrors { return f(o.(T), c.(T)) }
	}
	switch {
	case spec.Row != nil:
		row := spec.Row
		k.row = func(o Object, now time.Time) []string { return row(o.(T), now) }
	case k.row == nil:
		if k.columns != nil {
			panic("kinds.Define " + k.Name + ": Columns need a Row")
		}
		k.columns = []Column{{Name: "NAME"}, {Name: "AGE"}}
		k.row = func(o Object, now time.Time) []string {
			md := o.GetMetadata()
			return []string{md.GetName(), age(md.GetCreationTimestamp(), now)}
		}
	}
	k.hooks = spec.Hooks.untyped()
	k.statusField = k.newObject().ProtoReflect().Descriptor().Fields().ByName("status")
	return &k
}

// PrepareForCreate runs the kind's PrepareForCreate hook, if any.
func (k *Kind) PrepareForCreate(obj Object) {
	if k.hooks.prepareCreate != nil {
		k.hooks.prepareCreate(obj)
	}
}

// PrepareForUpdate runs the kind's PrepareForUpdate hook, if any.
func (k *Kind) PrepareForUpdate(old, obj Object) {
	if k.hooks.prepareUpdate != nil {
		k.hooks.prepareUpdate(old, obj)
	}
}

// GracePeriod is how long obj may take to go when deleted: 0 (at once)
// for kinds without graceful deletion.
func (k *Kind) GracePeriod(obj Object, requested *int64) int64 {
	if k.hooks.gracePeriod == nil {
		return 0
	}
	return k.hooks.gracePeriod(obj, requested)
}

// Terminates reports whether deleting an object of the kind waits for the
// server to empty it (see Hooks.Terminate).
func (k *Kind) Terminates() bool { return k.hooks.terminate != nil }

// Terminate marks obj as terminating; no-op unless Terminates.
func (k *Kind) Terminate(obj Object) {
	if k.hooks.terminate != nil {
		k.hooks.terminate(obj)
	}
}

// RunsContainers reports whether objects of the kind run containers
// themselves (PodSpec gives their spec).
func (k *Kind) RunsContainers() bool { return k.hooks.podSpec != nil }

// PodSpec is the pod spec an object runs, its own (Pod) or its template's
// (Deployment, Job, CronJob …); nil for kinds with neither.
func (k *Kind) PodSpec(obj Object) *apiv1.PodSpec {
	if k.hooks.podSpec != nil {
		return k.hooks.podSpec(obj)
	}
	if k.hooks.podTemplate != nil {
		return k.hooks.podTemplate(obj).GetSpec()
	}
	return nil
}

// HasPodSpec reports whether PodSpec can give an object's pod spec.
func (k *Kind) HasPodSpec() bool { return k.hooks.podSpec != nil || k.hooks.podTemplate != nil }

// PodTemplate is a workload's pod template; nil for other kinds.
func (k *Kind) PodTemplate(obj Object) *apiv1.PodTemplateSpec {
	if k.hooks.podTemplate == nil {
		return nil
	}
	return k.hooks.podTemplate(obj)
}

// Scalable reports whether the kind has spec.replicas (`ctl scale`).
func (k *Kind) Scalable() bool { return k.hooks.replicas != nil }

// Replicas is obj's spec.replicas; nil when unset or the kind is not scalable.
func (k *Kind) Replicas(obj Object) *int32 {
	if k.hooks.replicas == nil {
		return nil
	}
	return k.hooks.replicas(obj)
}

// QuotaUsage is what one object counts against a ResourceQuota: its count
// ("count/deployments.apps", and "pods" for kinds counted by plural) and
// what the kind's QuotaUsage hook adds.
func (k *Kind) QuotaUsage(obj Object) map[string]Quantity {
	u := map[string]Quantity{"count/" + k.Resource(): NewQuantity(1)}
	if k.hooks.quotaCountsPlural {
		u[k.Plural] = NewQuantity(1)
	}
	if k.hooks.quotaUsage != nil {
		k.hooks.quotaUsage(obj, u)
	}
	return u
}

// QuotaCharges reports whether a ResourceQuota's hard name counts objects
// of this kind.
func (k *Kind) QuotaCharges(name string) bool {
	if name == "count/"+k.Resource() || (k.hooks.quotaCountsPlural && name == k.Plural) {
		return true
	}
	return k.hooks.quotaCharges != nil && k.hooks.quotaCharges(name)
}

// QuotaRequired are the quota names a new object must have a value for
// when a quota limits them.
func (k *Kind) QuotaRequired() []string { return k.hooks.quotaRequired }
