package replicaset

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// maxBatch bounds pods created or deleted in one sync; the rest follow in
// the next (after the cache has seen these).
const maxBatch = 500

// Controller reconciles one kind (ReplicaSet or ReplicationController).
type Controller struct {
	*ctrlkit.Base
	a      adapter
	owners *ctrlkit.Cache
	pods   *ctrlkit.Cache
	rec    *client.Recorder
}

// NewReplicaSet returns the ReplicaSet controller.
func NewReplicaSet(cfg ctrlkit.Config) *Controller { return newController(cfg, replicaSetAdapter) }

// NewReplicationController returns the ReplicationController controller.
func NewReplicationController(cfg ctrlkit.Config) *Controller {
	return newController(cfg, replicationControllerAdapter)
}

func newController(cfg ctrlkit.Config, a adapter) *Controller {
	c := &Controller{a: a}
	name := strings.ToLower(a.kind) + "-controller"
	c.Base = ctrlkit.NewBase(name, cfg, c.sync)
	c.rec = client.NewRecorder(cfg.Client, name, "")
	c.owners = c.Watch(a.kind, c.EnqueueHandler())
	c.pods = c.Watch("Pod", client.EventHandler{
		OnAdd:    func(o client.Object) { c.podChanged(nil, o) },
		OnUpdate: func(old, o client.Object) { c.podChanged(old, o) },
		OnDelete: func(o client.Object) { c.podChanged(nil, o) },
	}).Indexed(ctrlkit.ByOwner).TrackReleases()
	return c
}

// podChanged queues the pod's controller, or for an orphan every owner
// whose selector matches it (one of them may adopt it). A pod whose labels
// or owner changed also wakes its previous owner.
func (c *Controller) podChanged(old, cur client.Object) {
	for _, o := range []client.Object{old, cur} {
		if o == nil {
			continue
		}
		md := o.GetMetadata()
		if ref := ctrlkit.ControllerOf(md); ref != nil {
			if ref.GetKind() == c.a.kind {
				c.EnqueueKey(md.GetNamespace() + "/" + ref.GetName())
			}
			continue
		}
		for _, owner := range c.owners.List() {
			if owner.GetMetadata().GetNamespace() == md.GetNamespace() && c.a.matches(owner, md.GetLabels()) {
				c.Enqueue(owner)
			}
		}
	}
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := ctrlkit.SplitKey(key)
	owner, ok := c.owners.Get(ns, name)
	if !ok {
		return nil // deleted: the API server's garbage collection removes its pods
	}
	md := owner.GetMetadata()
	pods, err := c.claim(ctx, owner, ctrlkit.OwnedPods(c.pods, md.GetUid(), ns))
	if err != nil {
		return err
	}
	var active []*apiv1.Pod
	for _, p := range pods {
		if ctrlkit.IsPodActive(p) {
			active = append(active, p)
		}
	}
	var manageErr error
	if md.GetDeletionTimestamp() == "" {
		manageErr = c.manage(ctx, owner, active)
	}
	st, requeue := c.computeStatus(owner, active, manageErr)
	if requeue > 0 {
		c.EnqueueAfter(key, requeue)
	}
	if err := c.writeStatus(ctx, owner, st); err != nil {
		return errors.Join(manageErr, err)
	}
	return manageErr
}

// claim returns the pods owner controls: it adopts matching orphans and
// releases owned pods that no longer match, each with a precondition on the
// pod's resourceVersion.
func (c *Controller) claim(ctx context.Context, owner client.Object, pods []*apiv1.Pod) ([]*apiv1.Pod, error) {
	md := owner.GetMetadata()
	var out []*apiv1.Pod
	var errs []error
	rechecked := false
	var adopted []client.Object
	defer func() { ctrlkit.UndoAdoptions(ctx, c.Client(), c.pods, owner, adopted) }()
	for _, p := range pods {
		pmd := p.GetMetadata()
		matches := c.a.matches(owner, pmd.GetLabels())
		ref := ctrlkit.ControllerOf(pmd)
		switch {
		case ref != nil && ref.GetUid() == md.GetUid():
			if matches {
				out = append(out, p)
				continue
			}
			if ctrlkit.IsPodTerminating(p) {
				continue
			}
			var keep []*apiv1.OwnerReference
			for _, r := range pmd.GetOwnerReferences() {
				if r.GetUid() != md.GetUid() {
					keep = append(keep, r)
				}
			}
			if err := ctrlkit.SetOwnerRefs(ctx, c.Client(), c.pods, p, keep); err != nil && !client.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("release pod %s: %w", pmd.GetName(), err))
			}
		case ref == nil && matches && md.GetDeletionTimestamp() == "" && ctrlkit.IsPodActive(p) && !c.pods.ReleasedFrom(p, md.GetUid()):
			if !rechecked {
				if err := ctrlkit.RecheckOwner(ctx, c.Client(), owner); err != nil {
					return out, errors.Join(append(errs, err)...)
				}
				rechecked = true
			}
			refs := append(append([]*apiv1.OwnerReference{}, pmd.GetOwnerReferences()...), ctrlkit.ControllerRef(owner, c.a.apiVersion))
			if err := ctrlkit.SetOwnerRefs(ctx, c.Client(), c.pods, p, refs); err != nil {
				if !client.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("adopt pod %s: %w", pmd.GetName(), err))
				}
				continue
			}
			adopted = append(adopted, p)
			out = append(out, p)
		}
	}
	return out, errors.Join(errs...)
}

// manage creates or deletes pods so that active has spec.replicas pods.
func (c *Controller) manage(ctx context.Context, owner client.Object, active []*apiv1.Pod) error {
	md := owner.GetMetadata()
	diff := int(c.a.replicas(owner)) - len(active)
	switch {
	case diff > 0:
		n := min(diff, maxBatch)
		names := ctrlkit.NextNames(md.GetName(), md.GetUid(), n, func(name string) bool {
			return c.pods.Has(md.GetNamespace(), name)
		})
		ref := ctrlkit.ControllerRef(owner, c.a.apiVersion)
		created, err := ctrlkit.SlowStartBatches(names, func(batch []string) ([]error, error) {
			pods := make([]*apiv1.Pod, len(batch))
			for i, name := range batch {
				pods[i] = ctrlkit.PodFromTemplate(c.a.template(owner), md.GetNamespace(), name, ref)
			}
			return ctrlkit.CreateMany(ctx, c.Client(), c.pods, pods)
		})
		if len(created) > 0 {
			c.event(ctx, owner, client.EventNormal, "SuccessfulCreate", "Created pod(s): "+strings.Join(created, ", "))
		}
		if err != nil {
			c.event(ctx, owner, client.EventWarning, "FailedCreate", "Error creating: "+client.Reason(err))
			return fmt.Errorf("create pods: %w", err)
		}
	case diff < 0:
		ctrlkit.DeletionOrder(active)
		victims := active[:min(-diff, maxBatch)]
		names := make([]string, len(victims))
		for i, p := range victims {
			names[i] = p.GetMetadata().GetName()
		}
		byName := map[string]*apiv1.Pod{}
		for _, p := range victims {
			byName[p.GetMetadata().GetName()] = p
		}
		deleted, err := ctrlkit.SlowStart(names, func(name string) error {
			return ctrlkit.Delete(ctx, c.Client(), c.pods, byName[name], "")
		})
		if len(deleted) > 0 {
			c.event(ctx, owner, client.EventNormal, "SuccessfulDelete", "Deleted pod(s): "+strings.Join(deleted, ", "))
		}
		if err != nil {
			return fmt.Errorf("delete pods: %w", err)
		}
	}
	return nil
}

func (c *Controller) computeStatus(owner client.Object, active []*apiv1.Pod, manageErr error) (status, time.Duration) {
	prev := c.a.getStatus(owner)
	st := status{Replicas: int32(len(active)), ObservedGeneration: owner.GetMetadata().GetGeneration()}
	tmplLabels := c.a.template(owner).GetMetadata().GetLabels()
	var requeue time.Duration
	now := c.Now()
	for _, p := range active {
		full := true
		for k, v := range tmplLabels {
			if p.GetMetadata().GetLabels()[k] != v {
				full = false
			}
		}
		if full {
			st.FullyLabeled++
		}
		if ctrlkit.IsPodReady(p) {
			st.Ready++
		}
		ok, left := ctrlkit.IsPodAvailable(p, c.a.minReady(owner), now)
		if ok {
			st.Available++
		} else if left > 0 && (requeue == 0 || left < requeue) {
			requeue = left
		}
	}
	// ReplicaFailure tells why pods are missing (quota, admission).
	for _, cond := range prev.Conditions {
		if cond.GetType() != "ReplicaFailure" {
			st.Conditions = append(st.Conditions, cond)
		}
	}
	if manageErr != nil && (refusedCreate(errors.Unwrap(manageErr)) || refusedCreate(manageErr)) {
		st.Conditions = append(st.Conditions, &apiv1.ReplicaCondition{Type: "ReplicaFailure", Status: "True",
			LastTransitionTime: now.UTC().Format(time.RFC3339), Reason: "FailedCreate", Message: client.Reason(manageErr)})
	}
	return st, requeue
}

func (c *Controller) writeStatus(ctx context.Context, owner client.Object, st status) error {
	prev := c.a.getStatus(owner)
	if proto.Equal(c.a.withStatus(owner, prev), c.a.withStatus(owner, st)) {
		return nil
	}
	_, err := ctrlkit.UpdateStatus(ctx, c.Client(), c.owners, c.a.withStatus(owner, st))
	if client.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *Controller) event(ctx context.Context, obj client.Object, typ, reason, msg string) {
	if err := c.rec.Event(ctx, obj, typ, reason, msg); err != nil {
		c.Log.Debug("record event", "err", err)
	}
}

// NewReplicaSetLoop builds the ReplicaSet controller for the registry
// (config: a ctrlkit.Config under "replicaset").
var NewReplicaSetLoop = ctrlkit.Factory("replicaset", NewReplicaSet)

// NewReplicationControllerLoop builds the ReplicationController controller
// for the registry (config under "replicationcontroller").
var NewReplicationControllerLoop = ctrlkit.Factory("replicationcontroller", NewReplicationController)

// refusedCreate: the server refused a pod the controller may create
// (authorization, quota, a terminating namespace): ReplicaFailure says why.
func refusedCreate(err error) bool { return client.IsForbidden(err) || client.IsNotAdmitted(err) }
