package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// Finalizers the server itself processes.
const (
	// FinalizerForeground holds an owner until its dependents are gone.
	FinalizerForeground = "foregroundDeletion"
	// FinalizerNamespace holds a namespace until its contents are gone.
	FinalizerNamespace = "kubernetes"
)

// Propagation policies.
const (
	PropagationBackground = "Background"
	PropagationForeground = "Foreground"
	PropagationOrphan     = "Orphan"
)

// defaultPodGrace is Kubernetes' terminationGracePeriodSeconds default.
const defaultPodGrace = 30

// Delete implements apiv1.APIServer.
func (s *Server) Delete(ctx context.Context, req *apiv1.DeleteRequest) (*apiv1.DeleteResponse, error) {
	k, err := s.lookup(req.GetKind())
	if err != nil {
		return nil, toStatus(err)
	}
	ns := scope(k, req.GetNamespace())
	// authorizeWrite: a node may delete only pods bound to it, decided on the stored pod.
	if err := s.authorizeWrite(ctx, k, "delete", "", ns, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	obj, removed, err := s.delete(ctx, k, ns, req.GetName(), deleteOpts{grace: req.GracePeriodSeconds,
		policy: req.GetPropagationPolicy(), pre: req.GetPreconditions(), dryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	env, err := s.pack(obj)
	if err != nil {
		return nil, toStatus(err)
	}
	return &apiv1.DeleteResponse{Object: env, Removed: removed}, nil
}

type deleteOpts struct {
	grace  *int64
	policy string
	pre    *apiv1.Preconditions
	dryRun bool
}

// delete removes an object now, or marks it for deletion (deletionTimestamp)
// when a grace period (pods on a node) or finalizers hold it.
func (s *Server) delete(ctx context.Context, k *kinds.Kind, ns, name string, o deleteOpts) (kinds.Object, bool, error) {
	policy := o.policy
	if policy == "" {
		policy = PropagationBackground
	}
	if policy != PropagationBackground && policy != PropagationForeground && policy != PropagationOrphan {
		return nil, false, fmt.Errorf("%w: propagationPolicy %q: must be Background, Foreground or Orphan", ErrInvalid, policy)
	}
	if o.grace != nil && *o.grace < 0 {
		return nil, false, fmt.Errorf("%w: gracePeriodSeconds %d is negative", ErrInvalid, *o.grace)
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.mustGet(ctx, k, ns, name)
		if err != nil {
			return nil, false, err
		}
		md := cur.obj.GetMetadata()
		if p := o.pre; p != nil {
			if p.GetUid() != "" && p.GetUid() != md.GetUid() {
				return nil, false, conflictOn(k, name, fmt.Errorf("precondition failed: uid %s, current is %s", p.GetUid(), md.GetUid()))
			}
			if p.GetResourceVersion() != "" && p.GetResourceVersion() != md.GetResourceVersion() {
				return nil, false, conflictOn(k, name, fmt.Errorf("precondition failed: resourceVersion %s, current is %s", p.GetResourceVersion(), md.GetResourceVersion()))
			}
		}
		if o.dryRun {
			return cur.obj, false, nil
		}
		if policy == PropagationOrphan {
			if err := s.orphanDependents(ctx, k, cur.obj); err != nil {
				return nil, false, err
			}
		}
		next := codec.Clone(cur.obj)
		nmd := kinds.Meta(next)
		grace := s.graceFor(k, next, o.grace)
		if policy == PropagationForeground && !containsString(nmd.Finalizers, FinalizerForeground) {
			deps, err := s.dependents(ctx, k, cur.obj)
			if err != nil {
				return nil, false, err
			}
			if len(deps) > 0 {
				nmd.Finalizers = append(nmd.Finalizers, FinalizerForeground)
			}
		}
		if k.Name == "Namespace" {
			return s.markNamespace(ctx, k, cur, next)
		}
		if grace == 0 && len(nmd.Finalizers) == 0 {
			rev, err := s.remove(ctx, k, cur)
			if errors.Is(err, ErrConflict) && attempt < maxAdmissionRetries {
				continue
			}
			if err != nil {
				return nil, false, err
			}
			nmd.ResourceVersion = formatRev(rev)
			if policy != PropagationOrphan {
				s.queueCascade(k, next, PropagationBackground)
			}
			return next, true, nil
		}
		// Held: mark it. A second delete may shorten a pod's grace, never lengthen it.
		if nmd.DeletionTimestamp == "" || (nmd.DeletionGracePeriodSeconds != nil && grace < *nmd.DeletionGracePeriodSeconds) {
			nmd.DeletionTimestamp = s.timestamp(s.cfg.Now().Add(time.Duration(grace) * time.Second))
			nmd.DeletionGracePeriodSeconds = &grace
		}
		if proto.Equal(next, cur.obj) {
			if containsString(nmd.Finalizers, FinalizerForeground) {
				s.queueForeground(k, next)
			}
			return cur.obj, false, nil
		}
		rev, err := s.put(ctx, k, cur, next)
		if errors.Is(err, ErrConflict) && attempt < maxAdmissionRetries {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		nmd.ResourceVersion = formatRev(rev)
		if containsString(nmd.Finalizers, FinalizerForeground) {
			s.queueForeground(k, next)
		}
		return next, false, nil
	}
}

// graceFor is how long an object may take to go: pods bound to a node get
// their grace period (the node's agent confirms with a grace-0 delete), all
// else goes at once.
func (s *Server) graceFor(k *kinds.Kind, obj kinds.Object, requested *int64) int64 {
	pod, ok := obj.(*apiv1.Pod)
	if !ok {
		return 0
	}
	if pod.GetSpec().GetNodeName() == "" {
		return 0 // never ran anywhere: nothing to stop
	}
	if ph := pod.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
		return 0
	}
	g := int64(defaultPodGrace)
	if t := pod.GetSpec().TerminationGracePeriodSeconds; t != nil {
		g = *t
	}
	if requested != nil {
		g = *requested
	}
	if cur := pod.GetMetadata().DeletionGracePeriodSeconds; cur != nil && *cur < g {
		g = *cur
	}
	return g
}

// podGracePending: a pod marked for deletion whose node has not confirmed.
func podGracePending(obj kinds.Object) bool {
	pod, ok := obj.(*apiv1.Pod)
	if !ok {
		return false
	}
	g := pod.GetMetadata().DeletionGracePeriodSeconds
	return pod.GetMetadata().GetDeletionTimestamp() != "" && g != nil && *g > 0
}

// put writes next over cur (compare-and-swap on cur's revision).
func (s *Server) put(ctx context.Context, k *kinds.Kind, cur *stored, next kinds.Object) (int64, error) {
	md := next.GetMetadata()
	key := k.Key(md.GetNamespace(), md.GetName())
	value, err := encode(next)
	if err != nil {
		return 0, err
	}
	t := &txnBuilder{objectKey: key}
	t.expect(key, cur.rev)
	t.put(key, value)
	return s.commit(ctx, t)
}

// remove deletes an object from the store, refunding its quota usage in
// the same txn. ErrConflict when it changed since cur was read.
func (s *Server) remove(ctx context.Context, k *kinds.Kind, cur *stored) (int64, error) {
	md := cur.obj.GetMetadata()
	key := k.Key(md.GetNamespace(), md.GetName())
	for attempt := 0; ; attempt++ {
		a := &admission{}
		if err := s.admitQuota(ctx, k, cur.obj, -1, a); err != nil {
			return 0, err
		}
		t := &txnBuilder{objectKey: key}
		t.expect(key, cur.rev)
		if err := a.addTo(t, s); err != nil {
			return 0, err
		}
		t.del(key)
		rev, err := s.commit(ctx, t)
		if errors.Is(err, errRetry) && attempt < maxAdmissionRetries {
			continue
		}
		return rev, err
	}
}

// markNamespace starts a namespace's termination: phase Terminating, the
// namespace finalizer, and a task that deletes its contents.
func (s *Server) markNamespace(ctx context.Context, k *kinds.Kind, cur *stored, next kinds.Object) (kinds.Object, bool, error) {
	n := next.(*apiv1.Namespace)
	md := kinds.Meta(n)
	if md.DeletionTimestamp == "" {
		md.DeletionTimestamp = s.timestamp(s.cfg.Now())
	}
	if n.Spec == nil {
		n.Spec = &apiv1.NamespaceSpec{}
	}
	if !containsString(n.Spec.Finalizers, FinalizerNamespace) {
		n.Spec.Finalizers = append(n.Spec.Finalizers, FinalizerNamespace)
	}
	if n.Status == nil {
		n.Status = &apiv1.NamespaceStatus{}
	}
	n.Status.Phase = "Terminating"
	if !proto.Equal(n, cur.obj) {
		rev, err := s.put(ctx, k, cur, n)
		if err != nil {
			return nil, false, err
		}
		md.ResourceVersion = formatRev(rev)
	}
	s.queueNamespace(md.Name)
	return n, false, nil
}

// dependents lists the objects whose ownerReferences name owner's uid: in
// its namespace for a namespaced owner, everywhere for a cluster-scoped one.
func (s *Server) dependents(ctx context.Context, k *kinds.Kind, owner kinds.Object) ([]dependent, error) {
	uid := owner.GetMetadata().GetUid()
	ns := owner.GetMetadata().GetNamespace()
	var out []dependent
	for _, dk := range s.reg.Kinds() {
		if k.Namespaced && !dk.Namespaced {
			continue
		}
		// A dependent's encoded value holds the owner's uid verbatim (in
		// its ownerReferences), so objects without those bytes are skipped
		// undecoded: deleting one pod among 50,000 must not decode them all.
		objs, _, err := s.listMatching(ctx, dk, ns, false, func(v []byte) bool { return bytes.Contains(v, []byte(uid)) })
		if err != nil {
			return nil, err
		}
		for _, st := range objs {
			for _, ref := range st.obj.GetMetadata().GetOwnerReferences() {
				if ref.GetUid() == uid {
					out = append(out, dependent{kind: dk, st: st})
					break
				}
			}
		}
	}
	return out, nil
}

type dependent struct {
	kind *kinds.Kind
	st   *stored
}

// orphanDependents removes ownerReferences to owner from its dependents.
func (s *Server) orphanDependents(ctx context.Context, k *kinds.Kind, owner kinds.Object) error {
	deps, err := s.dependents(ctx, k, owner)
	if err != nil {
		return err
	}
	uid := owner.GetMetadata().GetUid()
	for _, d := range deps {
		md := d.st.obj.GetMetadata()
		patch := map[string]any{"metadata": map[string]any{"ownerReferences": keepRefs(md.GetOwnerReferences(), uid)}}
		if _, err := s.patch(ctx, d.kind, md.GetNamespace(), md.GetName(), mustJSON(patch), updateOpts{}); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("orphan %s %s/%s: %w", d.kind.Name, md.GetNamespace(), md.GetName(), err)
		}
	}
	return nil
}

func keepRefs(refs []*apiv1.OwnerReference, dropUID string) []any {
	out := []any{}
	for _, r := range refs {
		if r.GetUid() == dropUID {
			continue
		}
		m := map[string]any{"apiVersion": r.GetApiVersion(), "kind": r.GetKind(), "name": r.GetName(), "uid": r.GetUid()}
		if r.Controller != nil {
			m["controller"] = *r.Controller
		}
		if r.BlockOwnerDeletion != nil {
			m["blockOwnerDeletion"] = *r.BlockOwnerDeletion
		}
		out = append(out, m)
	}
	return out
}
