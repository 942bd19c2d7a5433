package ctrlkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Pod phases.
const (
	PodPending   = "Pending"
	PodRunning   = "Running"
	PodSucceeded = "Succeeded"
	PodFailed    = "Failed"
)

// IsPodActive: not finished and not being deleted — a pod that counts
// towards a controller's replicas.
func IsPodActive(p *apiv1.Pod) bool {
	ph := p.GetStatus().GetPhase()
	return ph != PodSucceeded && ph != PodFailed && p.GetMetadata().GetDeletionTimestamp() == ""
}

// IsPodTerminating: marked for deletion.
func IsPodTerminating(p *apiv1.Pod) bool { return p.GetMetadata().GetDeletionTimestamp() != "" }

// readyCondition returns the pod's Ready condition, or nil.
func readyCondition(p *apiv1.Pod) *apiv1.PodCondition {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c
		}
	}
	return nil
}

// IsPodReady: the Ready condition is True.
func IsPodReady(p *apiv1.Pod) bool {
	c := readyCondition(p)
	return c != nil && c.GetStatus() == "True"
}

// IsPodAvailable: ready for at least minReadySeconds at now. The second
// result, when positive, is how long until it becomes available.
func IsPodAvailable(p *apiv1.Pod, minReadySeconds int32, now time.Time) (bool, time.Duration) {
	if !IsPodReady(p) {
		return false, 0
	}
	if minReadySeconds <= 0 {
		return true, 0
	}
	since, err := time.Parse(time.RFC3339, readyCondition(p).GetLastTransitionTime())
	if err != nil {
		return true, 0 // no transition time: count it as available, as Kubernetes does
	}
	left := since.Add(time.Duration(minReadySeconds) * time.Second).Sub(now)
	if left <= 0 {
		return true, 0
	}
	return false, left
}

// ControllerOf returns the controller ownerReference, or nil.
func ControllerOf(md *apiv1.ObjectMeta) *apiv1.OwnerReference {
	for _, r := range md.GetOwnerReferences() {
		if r.GetController() {
			return r
		}
	}
	return nil
}

// ControllerRef makes the controller ownerReference pointing at owner.
func ControllerRef(owner client.Object, apiVersion string) *apiv1.OwnerReference {
	t := true
	md := owner.GetMetadata()
	return &apiv1.OwnerReference{ApiVersion: apiVersion, Kind: client.KindOf(owner), Name: md.GetName(), Uid: md.GetUid(),
		Controller: &t, BlockOwnerDeletion: &t}
}

// NameSuffix is 5 characters from Kubernetes' safe alphabet (no vowels,
// no look-alikes), derived from parts: deterministic, so two writers
// choosing "the next name" for the same thing choose the same one.
func NameSuffix(parts ...string) string {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return SafeEncode(h.Sum64(), 5)
}

const safeAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// SafeEncode renders v in the safe alphabet with n characters.
func SafeEncode(v uint64, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = safeAlphabet[v%uint64(len(safeAlphabet))]
		v /= uint64(len(safeAlphabet))
	}
	return string(b)
}

// NextNames returns n pod names "<prefix>-<suffix>" for owner uid that no
// object in taken uses: the lowest free slots, so they are the same for any
// writer with the same view.
func NextNames(prefix, ownerUID string, n int, taken func(name string) bool) []string {
	var out []string
	for slot := 0; len(out) < n; slot++ {
		name := fmt.Sprintf("%s-%s", prefix, NameSuffix(ownerUID, fmt.Sprint(slot)))
		if !taken(name) {
			out = append(out, name)
		}
	}
	return out
}

// PodFromTemplate builds a pod of owner from a template.
func PodFromTemplate(t *apiv1.PodTemplateSpec, ns, name string, ref *apiv1.OwnerReference) *apiv1.Pod {
	md := &apiv1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{}, Annotations: map[string]string{}}
	for k, v := range t.GetMetadata().GetLabels() {
		md.Labels[k] = v
	}
	for k, v := range t.GetMetadata().GetAnnotations() {
		md.Annotations[k] = v
	}
	md.Finalizers = append(md.Finalizers, t.GetMetadata().GetFinalizers()...)
	if ref != nil {
		md.OwnerReferences = []*apiv1.OwnerReference{ref}
	}
	spec := codec.Clone(t.GetSpec())
	if spec == nil {
		spec = &apiv1.PodSpec{}
	}
	return &apiv1.Pod{ApiVersion: "v1", Kind: "Pod", Metadata: md, Spec: spec}
}

// DeletionOrder sorts pods so that the ones to delete first come first:
// unscheduled before scheduled, Pending before Unknown before Running,
// not ready before ready, ready for less time before longer, more
// restarts before fewer, newer before older (Kubernetes' ActivePods order).
func DeletionOrder(pods []*apiv1.Pod) {
	rank := map[string]int{PodPending: 0, "Unknown": 1, PodRunning: 2}
	restarts := func(p *apiv1.Pod) int32 {
		var n int32
		for _, c := range p.GetStatus().GetContainerStatuses() {
			n = max(n, c.GetRestartCount())
		}
		return n
	}
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if (a.GetSpec().GetNodeName() == "") != (b.GetSpec().GetNodeName() == "") {
			return a.GetSpec().GetNodeName() == ""
		}
		if ra, rb := rank[a.GetStatus().GetPhase()], rank[b.GetStatus().GetPhase()]; ra != rb {
			return ra < rb
		}
		if IsPodReady(a) != IsPodReady(b) {
			return !IsPodReady(a)
		}
		if IsPodReady(a) {
			ta, tb := readyCondition(a).GetLastTransitionTime(), readyCondition(b).GetLastTransitionTime()
			if ta != tb {
				return ta > tb
			}
		}
		if ra, rb := restarts(a), restarts(b); ra != rb {
			return ra > rb
		}
		ca, cb := a.GetMetadata().GetCreationTimestamp(), b.GetMetadata().GetCreationTimestamp()
		if ca != cb {
			return ca > cb
		}
		return a.GetMetadata().GetName() > b.GetMetadata().GetName()
	})
}

// Create creates obj and records the write in cache.
func Create[T client.Object](ctx context.Context, c *client.Client, cache *Cache, obj T) (T, error) {
	out, err := client.Create(ctx, c, obj)
	if err == nil && cache != nil {
		cache.Wrote(out)
	}
	return out, err
}

// CreateMany creates objs in one call and records the writes in cache.
// errs holds one error per object (nil: created); err is for the call.
func CreateMany[T client.Object](ctx context.Context, c *client.Client, cache *Cache, objs []T) (errs []error, err error) {
	versions, errs, err := client.CreateManyVersions(ctx, c, objs)
	if err != nil {
		return nil, err
	}
	if cache != nil {
		for i, rv := range versions {
			if errs[i] == nil {
				cache.wroteRevision(client.Revision(rv))
			}
		}
	}
	return errs, nil
}

// Update writes obj with its resourceVersion as precondition.
func Update[T client.Object](ctx context.Context, c *client.Client, cache *Cache, obj T) (T, error) {
	if obj.GetMetadata().GetResourceVersion() == "" {
		var zero T
		return zero, fmt.Errorf("update %s %s: no resourceVersion to use as precondition", client.KindOf(obj), client.Key(obj))
	}
	out, err := client.Update(ctx, c, obj)
	if err == nil && cache != nil {
		cache.Wrote(out)
	}
	return out, err
}

// UpdateStatus writes obj's status with its resourceVersion as precondition.
func UpdateStatus[T client.Object](ctx context.Context, c *client.Client, cache *Cache, obj T) (T, error) {
	if obj.GetMetadata().GetResourceVersion() == "" {
		var zero T
		return zero, fmt.Errorf("update status %s %s: no resourceVersion to use as precondition", client.KindOf(obj), client.Key(obj))
	}
	out, err := client.UpdateStatus(ctx, c, obj)
	if err == nil && cache != nil {
		cache.Wrote(out)
	}
	return out, err
}

// Delete deletes obj if it is still the version in hand (uid and
// resourceVersion preconditions). NotFound counts as done.
func Delete(ctx context.Context, c *client.Client, cache *Cache, obj client.Object, policy string) error {
	md := obj.GetMetadata()
	out, _, err := c.Delete(ctx, client.KindOf(obj), md.GetNamespace(), md.GetName(),
		client.DeleteOptions{UID: md.GetUid(), ResourceVersion: md.GetResourceVersion(), PropagationPolicy: policy})
	if client.IsNotFound(err) {
		return nil
	}
	if err == nil && cache != nil {
		cache.Wrote(out)
	}
	return err
}

// SetOwnerRefs replaces obj's ownerReferences (merge patch, with the
// resourceVersion in hand as precondition).
func SetOwnerRefs(ctx context.Context, c *client.Client, cache *Cache, obj client.Object, refs []*apiv1.OwnerReference) error {
	md := obj.GetMetadata()
	list := make([]any, 0, len(refs))
	for _, r := range refs {
		m := map[string]any{"apiVersion": r.GetApiVersion(), "kind": r.GetKind(), "name": r.GetName(), "uid": r.GetUid()}
		if r.Controller != nil {
			m["controller"] = r.GetController()
		}
		if r.BlockOwnerDeletion != nil {
			m["blockOwnerDeletion"] = r.GetBlockOwnerDeletion()
		}
		list = append(list, m)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": list, "resourceVersion": md.GetResourceVersion()}})
	env, err := c.API().Patch(ctx, &apiv1.PatchRequest{Kind: client.KindOf(obj), Namespace: md.GetNamespace(), Name: md.GetName(), Patch: patch})
	if err != nil {
		return err
	}
	if cache != nil {
		if out, err := client.Unpack(env); err == nil {
			cache.Wrote(out)
		}
	}
	return nil
}

// OwnedPods returns the cached pods that uid controls, plus, with
// orphansOf set, the pods of that namespace without a controller (an owner
// may adopt them). They are the cache's own: read-only (see ByIndex). The
// cache must be Indexed(ByOwner).
func OwnedPods(cache *Cache, uid, orphansOf string) []*apiv1.Pod {
	objs := cache.ByIndex(OwnerKey(uid))
	if orphansOf != "" {
		objs = append(objs, cache.ByIndex(OrphanKey(orphansOf))...)
	}
	out := make([]*apiv1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*apiv1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}

// Pods returns the cached pods of namespace ns (copies).
func Pods(cache *Cache, ns string) []*apiv1.Pod {
	var out []*apiv1.Pod
	for _, o := range cache.List() {
		if p, ok := o.(*apiv1.Pod); ok && p.GetMetadata().GetNamespace() == ns {
			out = append(out, p)
		}
	}
	return out
}

// ErrOwnerGone: an owner is gone or being deleted, so it must not adopt.
var ErrOwnerGone = errors.New("owner is gone or being deleted")

// UndoAdoptions releases objects adopted for owner if owner turned out to
// be gone after all: the API server orphans dependents before it removes
// the owner, so an adoption can slip in between; without this, the
// garbage collector would delete the orphans for the vanished owner.
func UndoAdoptions(ctx context.Context, c *client.Client, cache *Cache, owner client.Object, adopted []client.Object) {
	if len(adopted) == 0 || !errors.Is(RecheckOwner(ctx, c, owner), ErrOwnerGone) {
		return
	}
	uid := owner.GetMetadata().GetUid()
	for _, o := range adopted {
		env, err := c.API().Get(ctx, &apiv1.GetRequest{Kind: client.KindOf(o), Namespace: o.GetMetadata().GetNamespace(), Name: o.GetMetadata().GetName()})
		if err != nil {
			continue
		}
		cur, err := client.Unpack(env)
		if err != nil {
			continue
		}
		var keep []*apiv1.OwnerReference
		for _, r := range cur.GetMetadata().GetOwnerReferences() {
			if r.GetUid() != uid {
				keep = append(keep, r)
			}
		}
		_ = SetOwnerRefs(ctx, c, cache, cur, keep) // best effort: a conflict means someone else changed it
	}
}

// RecheckOwner reads owner afresh (linearizable) before an adoption: a
// cached owner may already be deleted, and adopting for it would hand the
// orphan to the garbage collector.
func RecheckOwner(ctx context.Context, c *client.Client, owner client.Object) error {
	md := owner.GetMetadata()
	env, err := c.API().Get(ctx, &apiv1.GetRequest{Kind: client.KindOf(owner), Namespace: md.GetNamespace(), Name: md.GetName()})
	if client.IsNotFound(err) {
		return fmt.Errorf("%s %s: %w", client.KindOf(owner), md.GetName(), ErrOwnerGone)
	}
	if err != nil {
		return err
	}
	cur, err := client.Unpack(env)
	if err != nil {
		return err
	}
	if cur.GetMetadata().GetUid() != md.GetUid() || cur.GetMetadata().GetDeletionTimestamp() != "" {
		return fmt.Errorf("%s %s: %w", client.KindOf(owner), md.GetName(), ErrOwnerGone)
	}
	return nil
}
