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
	FinalizerNamespace = kinds.NamespaceFinalizer
)

// Propagation policies.
const (
	PropagationBackground = "Background"
	PropagationForeground = "Foreground"
	PropagationOrphan     = "Orphan"
)

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
	// guard, when set, is asked before each write attempt with the object
	// as read: it refuses (an error) or adds its compares and writes to the
	// delete's own transaction (an eviction's PodDisruptionBudget), so what
	// it read cannot change between its check and the delete.
	guard func(ctx context.Context, cur kinds.Object, t *txnBuilder) error
}

// delete removes an object now, or marks it for deletion (deletionTimestamp)
// when its kind's grace period (pods on a node), finalizers or its kind's
// termination (namespaces) hold it.
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
			if o.guard != nil {
				if err := o.guard(ctx, cur.obj, &txnBuilder{}); err != nil {
					return nil, false, err
				}
			}
			return cur.obj, false, nil
		}
		if policy == PropagationOrphan {
			if err := s.orphanDependents(ctx, k, cur.obj); err != nil {
				return nil, false, err
			}
		}
		next := codec.Clone(cur.obj)
		nmd := kinds.Meta(next)
		grace := k.GracePeriod(next, o.grace)
		if policy == PropagationForeground && !containsString(nmd.Finalizers, FinalizerForeground) {
			deps, err := s.dependents(ctx, k, cur.obj)
			if err != nil {
				return nil, false, err
			}
			if len(deps) > 0 {
				nmd.Finalizers = append(nmd.Finalizers, FinalizerForeground)
			}
		}
		if k.Terminates() {
			return s.markTerminating(ctx, k, cur, next)
		}
		if grace == 0 && len(nmd.Finalizers) == 0 {
			rev, err := s.removeGuarded(ctx, k, cur, o.guard)
			if (errors.Is(err, ErrConflict) || errors.Is(err, errRetry)) && attempt < maxAdmissionRetries {
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
		rev, err := s.putGuarded(ctx, k, cur, next, o.guard)
		if (errors.Is(err, ErrConflict) || errors.Is(err, errRetry)) && attempt < maxAdmissionRetries {
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

// gracePending: an object marked for deletion with a grace period (its
// kind's GracePeriod hook gave one) whose holder has not confirmed yet
// (a pod's node, with a grace-0 delete).
func gracePending(obj kinds.Object) bool {
	md := obj.GetMetadata()
	return md.GetDeletionTimestamp() != "" && md.GetDeletionGracePeriodSeconds() > 0
}

// put writes next over cur (compare-and-swap on cur's revision).
func (s *Server) put(ctx context.Context, k *kinds.Kind, cur *stored, next kinds.Object) (int64, error) {
	return s.putGuarded(ctx, k, cur, next, nil)
}

// putGuarded is put with a delete's guard (deleteOpts.guard) in its txn.
func (s *Server) putGuarded(ctx context.Context, k *kinds.Kind, cur *stored, next kinds.Object,
	guard func(context.Context, kinds.Object, *txnBuilder) error) (int64, error) {
	md := next.GetMetadata()
	key := k.Key(md.GetNamespace(), md.GetName())
	value, err := encode(next)
	if err != nil {
		return 0, err
	}
	t := &txnBuilder{objectKey: key}
	if guard != nil {
		if err := guard(ctx, cur.obj, t); err != nil {
			return 0, err
		}
	}
	t.expect(key, cur.rev)
	t.put(key, value)
	return s.commit(ctx, t)
}

// remove deletes an object from the store, refunding its quota usage in
// the same txn. ErrConflict when it changed since cur was read.
func (s *Server) remove(ctx context.Context, k *kinds.Kind, cur *stored) (int64, error) {
	return s.removeGuarded(ctx, k, cur, nil)
}

// removeGuarded is remove with a delete's guard (deleteOpts.guard) in its
// txn; the guard is asked again on each attempt.
func (s *Server) removeGuarded(ctx context.Context, k *kinds.Kind, cur *stored,
	guard func(context.Context, kinds.Object, *txnBuilder) error) (int64, error) {
	md := cur.obj.GetMetadata()
	key := k.Key(md.GetNamespace(), md.GetName())
	remove := s.chain(k, opDelete)
	for attempt := 0; ; attempt++ {
		r := &admissionRequest{op: opDelete, kind: k, obj: cur.obj}
		r.txn.objectKey = key
		if err := remove.runAdmit(ctx, r); err != nil {
			return 0, err
		}
		if err := remove.runValidate(ctx, r); err != nil {
			return 0, err
		}
		if guard != nil {
			if err := guard(ctx, cur.obj, &r.txn); err != nil {
				return 0, err
			}
		}
		r.txn.expect(key, cur.rev)
		r.txn.del(key)
		rev, err := s.commit(ctx, &r.txn)
		if errors.Is(err, errRetry) && attempt < maxAdmissionRetries {
			continue
		}
		return rev, err
	}
}

// markTerminating starts the deletion of an object its server empties
// first (a namespace: its kind's Terminate hook sets phase Terminating and
// the namespace finalizer), and queues the task that deletes its contents.
func (s *Server) markTerminating(ctx context.Context, k *kinds.Kind, cur *stored, next kinds.Object) (kinds.Object, bool, error) {
	md := kinds.Meta(next)
	if md.DeletionTimestamp == "" {
		md.DeletionTimestamp = s.timestamp(s.cfg.Now())
	}
	k.Terminate(next)
	if !proto.Equal(next, cur.obj) {
		rev, err := s.put(ctx, k, cur, next)
		if err != nil {
			return nil, false, err
		}
		md.ResourceVersion = formatRev(rev)
	}
	// Namespaces are the kind that terminates; their contents go first.
	s.queueNamespace(md.Name)
	return next, false, nil
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
