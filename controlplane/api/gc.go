package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// errLater: a deletion step must wait (dependents or namespace contents
// still present); the task is retried after RetryBackoff.
var errLater = errors.New("waiting for dependents to go")

// task is one unit of deletion work queued by a request.
type task struct {
	name     string
	run      func(ctx context.Context) error
	deadline time.Time
}

// taskQueue runs deletion tasks one at a time. A full queue drops tasks: the
// leader's periodic sweep (Collect, run by the garbagecollector loop)
// finds whatever they would have done.
type taskQueue struct {
	ch      chan task
	backoff time.Duration
}

func newTaskQueue() *taskQueue { return &taskQueue{ch: make(chan task, 4096)} }

func (q *taskQueue) add(t task) bool {
	select {
	case q.ch <- t:
		return true
	default:
		return false
	}
}

func (q *taskQueue) run(ctx context.Context, log *slog.Logger, backoff time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-q.ch:
			err := t.run(ctx)
			switch {
			case err == nil, ctx.Err() != nil:
			case time.Now().After(t.deadline):
				log.Warn("deletion task gave up; the leader's sweep will retry", "task", t.name, "err", err)
			default:
				if !errors.Is(err, errLater) {
					log.Debug("deletion task failed, retrying", "task", t.name, "err", err)
				}
				time.AfterFunc(backoff, func() { q.add(t) })
			}
		}
	}
}

// taskDeadline bounds how long a queued task keeps retrying before the
// sweep takes over.
const taskDeadline = 10 * time.Minute

func (s *Server) queue(name string, run func(ctx context.Context) error) {
	if !s.tasks.add(task{name: name, run: run, deadline: s.cfg.Now().Add(taskDeadline)}) {
		s.log.Warn("deletion queue full; the leader's sweep will pick this up", "task", name)
	}
}

// queueCascade deletes the dependents of a removed owner.
func (s *Server) queueCascade(k *kinds.Kind, owner kinds.Object, policy string) {
	md := owner.GetMetadata()
	s.queue("cascade "+k.Name+" "+md.GetNamespace()+"/"+md.GetName(), func(ctx context.Context) error {
		return s.cascade(ctx, k, owner, policy)
	})
}

func (s *Server) cascade(ctx context.Context, k *kinds.Kind, owner kinds.Object, policy string) error {
	deps, err := s.dependents(ctx, k, owner)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range deps {
		md := d.st.obj.GetMetadata()
		if md.GetDeletionTimestamp() != "" && policy == PropagationBackground {
			continue
		}
		if _, _, err := s.delete(ctx, d.kind, md.GetNamespace(), md.GetName(), deleteOpts{policy: policy}); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// queueForeground deletes an owner's dependents (foreground, recursively)
// and, once none is left, drops the owner's foregroundDeletion finalizer.
func (s *Server) queueForeground(k *kinds.Kind, owner kinds.Object) {
	md := owner.GetMetadata()
	ns, name, uid := md.GetNamespace(), md.GetName(), md.GetUid()
	s.queue("foreground "+k.Name+" "+ns+"/"+name, func(ctx context.Context) error {
		return s.foreground(ctx, k, ns, name, uid)
	})
}

func (s *Server) foreground(ctx context.Context, k *kinds.Kind, ns, name, uid string) error {
	cur, err := s.get(ctx, k, ns, name, false)
	if err != nil {
		return err
	}
	if cur == nil || cur.obj.GetMetadata().GetUid() != uid || !containsString(cur.obj.GetMetadata().GetFinalizers(), FinalizerForeground) {
		return nil
	}
	if err := s.cascade(ctx, k, cur.obj, PropagationForeground); err != nil {
		return err
	}
	deps, err := s.dependents(ctx, k, cur.obj)
	if err != nil {
		return err
	}
	if len(deps) > 0 {
		return fmt.Errorf("%w: %d dependents of %s %s/%s", errLater, len(deps), k.Name, ns, name)
	}
	return s.dropFinalizer(ctx, k, ns, name, uid, FinalizerForeground)
}

// dropFinalizer removes one finalizer; update then finishes the deletion if
// it was the last.
func (s *Server) dropFinalizer(ctx context.Context, k *kinds.Kind, ns, name, uid, finalizer string) error {
	cur, err := s.get(ctx, k, ns, name, false)
	if err != nil || cur == nil || cur.obj.GetMetadata().GetUid() != uid {
		return err
	}
	var keep []any
	for _, f := range cur.obj.GetMetadata().GetFinalizers() {
		if f != finalizer {
			keep = append(keep, f)
		}
	}
	patch := map[string]any{"metadata": map[string]any{"finalizers": keep, "resourceVersion": cur.obj.GetMetadata().GetResourceVersion()}}
	_, err = s.patch(ctx, k, ns, name, mustJSON(patch), updateOpts{})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// queueNamespace deletes a terminating namespace's contents, then the namespace.
func (s *Server) queueNamespace(name string) {
	s.queue("namespace "+name, func(ctx context.Context) error { return s.finishNamespace(ctx, name) })
}

func (s *Server) finishNamespace(ctx context.Context, name string) error {
	nk := s.kind("Namespace")
	cur, err := s.get(ctx, nk, "", name, false)
	if err != nil || cur == nil {
		return err
	}
	if cur.obj.GetMetadata().GetDeletionTimestamp() == "" {
		return nil
	}
	left := 0
	var errs []error
	for _, k := range s.reg.Kinds() {
		if !k.Namespaced {
			continue
		}
		objs, _, err := s.listAll(ctx, k, name, false)
		if err != nil {
			return err
		}
		left += len(objs)
		for _, st := range objs {
			md := st.obj.GetMetadata()
			if md.GetDeletionTimestamp() != "" {
				continue
			}
			if _, _, err := s.delete(ctx, k, name, md.GetName(), deleteOpts{}); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if left > 0 {
		// Check again on the next round: pods may still be terminating.
		objsLeft := 0
		for _, k := range s.reg.Kinds() {
			if k.Namespaced {
				objs, _, err := s.listAll(ctx, k, name, false)
				if err != nil {
					return err
				}
				objsLeft += len(objs)
			}
		}
		if objsLeft > 0 {
			return fmt.Errorf("%w: %d objects left in namespace %s", errLater, objsLeft, name)
		}
	}
	cur, err = s.get(ctx, nk, "", name, false)
	if err != nil || cur == nil {
		return err
	}
	_, err = s.remove(ctx, nk, cur)
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("%w: namespace %s changed", errLater, name)
	}
	return err
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with maps of strings, bools and slices
	}
	return b
}

// Collect finishes deletions a crashed server left undone: objects whose
// last finalizer went, foreground owners, terminating namespaces, and
// dependents whose owners are gone. The leader's garbagecollector loop
// runs it periodically (controllers.DeletionSweeper); it is safe to run anywhere (every write is a compare-and-swap). It decodes only
// metadata, and whole objects only for those it acts on.
func (s *Server) Collect(ctx context.Context) error {
	var errs []error
	uids := map[string]bool{}
	type item struct {
		k  *kinds.Kind
		kv *storepb.KeyValue
		md *apiv1.ObjectMeta
	}
	var all []item
	for _, k := range s.reg.Kinds() {
		_, err := s.scan(ctx, k, "", false, func(kv *storepb.KeyValue) error {
			md, err := decodeMeta(k, kv)
			if err != nil {
				return err
			}
			uids[md.GetUid()] = true
			if md.GetDeletionTimestamp() != "" || len(md.GetOwnerReferences()) > 0 {
				all = append(all, item{k, kv, md})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, it := range all {
		md := it.md
		ns, name := md.GetNamespace(), md.GetName()
		if md.GetDeletionTimestamp() != "" {
			switch {
			case it.k.Terminates(): // a namespace: its contents go first (as markTerminating)
				s.queueNamespace(name)
			case containsString(md.GetFinalizers(), FinalizerForeground) || len(md.GetFinalizers()) == 0:
				obj, err := decode(it.k, it.kv)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				st := &stored{obj: obj, rev: it.kv.ModRevision}
				if len(md.GetFinalizers()) > 0 {
					s.queueForeground(it.k, obj)
				} else if !gracePending(obj) {
					if _, err := s.remove(ctx, it.k, st); err != nil && !errors.Is(err, ErrConflict) {
						errs = append(errs, err)
					}
				}
			}
			continue
		}
		refs := md.GetOwnerReferences()
		gone := true
		for _, r := range refs {
			if uids[r.GetUid()] || s.ownerExists(ctx, ns, r) {
				gone = false
				break
			}
		}
		if gone {
			if _, _, err := s.delete(ctx, it.k, ns, name, deleteOpts{pre: &apiv1.Preconditions{Uid: md.GetUid()}}); err != nil &&
				!errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ownerExists re-reads an owner the sweep did not see (it may have been
// created after its kind was listed).
func (s *Server) ownerExists(ctx context.Context, ns string, r *apiv1.OwnerReference) bool {
	k, ok := s.reg.ForKind(r.GetKind())
	if !ok {
		return true // an owner of a kind we do not serve: leave the dependent alone
	}
	st, err := s.get(ctx, k, scope(k, ns), r.GetName(), false)
	if err != nil {
		return true
	}
	return st != nil && st.obj.GetMetadata().GetUid() == r.GetUid()
}
