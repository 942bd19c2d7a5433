package deployment

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Controller reconciles Deployments.
type Controller struct {
	*ctrlkit.Base
	deploys *ctrlkit.Cache
	sets    *ctrlkit.Cache
	pods    *ctrlkit.Cache
	rec     *client.Recorder
}

// New returns the Deployment controller.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{}
	c.Base = ctrlkit.NewBase("deployment-controller", cfg, c.sync)
	c.rec = client.NewRecorder(cfg.Client, "deployment-controller", "")
	c.deploys = c.Watch("Deployment", c.EnqueueHandler())
	c.sets = c.Watch("ReplicaSet", client.EventHandler{
		OnAdd:    func(o client.Object) { c.setChanged(o) },
		OnUpdate: func(old, o client.Object) { c.setChanged(old); c.setChanged(o) },
		OnDelete: func(o client.Object) { c.setChanged(o) },
	}).Indexed(ctrlkit.ByOwner).TrackReleases()
	// Pods matter only to Recreate, which waits for the old pods to go.
	c.pods = c.Watch("Pod", client.EventHandler{
		OnUpdate: func(_, o client.Object) {
			if ph := o.(*apiv1.Pod).GetStatus().GetPhase(); ph == ctrlkit.PodSucceeded || ph == ctrlkit.PodFailed {
				c.podGone(o)
			}
		},
		OnDelete: func(o client.Object) { c.podGone(o) },
	}).Indexed(ctrlkit.ByOwner)
	return c
}

func (c *Controller) setChanged(o client.Object) {
	md := o.GetMetadata()
	if ref := ctrlkit.ControllerOf(md); ref != nil {
		if ref.GetKind() == "Deployment" {
			c.EnqueueKey(md.GetNamespace() + "/" + ref.GetName())
		}
		return
	}
	for _, d := range c.deploys.List() {
		if d.GetMetadata().GetNamespace() == md.GetNamespace() &&
			kinds.SelectorMatches(d.(*apiv1.Deployment).GetSpec().GetSelector(), md.GetLabels()) {
			c.Enqueue(d)
		}
	}
}

func (c *Controller) podGone(o client.Object) {
	md := o.GetMetadata()
	ref := ctrlkit.ControllerOf(md)
	if ref == nil || ref.GetKind() != "ReplicaSet" {
		return
	}
	if rs, ok := c.sets.Get(md.GetNamespace(), ref.GetName()); ok {
		c.setChanged(rs)
	}
}

// replicaSets are the cached ReplicaSets d controls and the namespace's
// ReplicaSets without a controller.
func (c *Controller) replicaSets(d *apiv1.Deployment) []*apiv1.ReplicaSet {
	objs := append(c.sets.ByIndex(ctrlkit.OwnerKey(d.GetMetadata().GetUid())), c.sets.ByIndex(ctrlkit.OrphanKey(d.GetMetadata().GetNamespace()))...)
	out := make([]*apiv1.ReplicaSet, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*apiv1.ReplicaSet))
	}
	return out
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := ctrlkit.SplitKey(key)
	obj, ok := c.deploys.Get(ns, name)
	if !ok {
		return nil
	}
	d := obj.(*apiv1.Deployment)
	sets, err := c.claim(ctx, d)
	if err != nil {
		return err
	}
	if d.GetMetadata().GetDeletionTimestamp() != "" {
		return c.writeStatus(ctx, d, sets, nil, false, false)
	}
	r := &rollout{c: c, d: d, all: sets}
	r.split()
	if d.GetSpec().GetPaused() {
		if err := r.scalePaused(ctx); err != nil {
			return err
		}
		return c.finish(ctx, r)
	}
	if r.newRS == nil {
		if err := r.createNew(ctx); err != nil {
			return err
		}
	} else if err := r.bumpRevision(ctx); err != nil {
		return err
	}
	if d.GetSpec().GetStrategy().GetType() == "Recreate" {
		err = r.recreate(ctx)
	} else {
		err = r.rolling(ctx)
	}
	if err != nil {
		return err
	}
	return c.finish(ctx, r)
}

func (c *Controller) finish(ctx context.Context, r *rollout) error {
	if err := c.cleanup(ctx, r); err != nil {
		return err
	}
	if err := c.syncRevisionAnnotation(ctx, r); err != nil {
		return err
	}
	return c.writeStatus(ctx, r.d, r.all, r.newRS, r.progressed, r.created)
}

// claim returns the ReplicaSets d controls, adopting matching orphans and
// releasing owned ones that stopped matching.
func (c *Controller) claim(ctx context.Context, d *apiv1.Deployment) ([]*apiv1.ReplicaSet, error) {
	md := d.GetMetadata()
	var out []*apiv1.ReplicaSet
	var errs []error
	rechecked := false
	var adopted []client.Object
	defer func() { ctrlkit.UndoAdoptions(ctx, c.Client(), c.sets, d, adopted) }()
	for _, rs := range c.replicaSets(d) {
		rmd := rs.GetMetadata()
		matches := kinds.SelectorMatches(d.GetSpec().GetSelector(), rmd.GetLabels())
		ref := ctrlkit.ControllerOf(rmd)
		switch {
		case ref != nil && ref.GetUid() == md.GetUid():
			if matches || rmd.GetDeletionTimestamp() != "" {
				out = append(out, rs)
				continue
			}
			var keep []*apiv1.OwnerReference
			for _, r := range rmd.GetOwnerReferences() {
				if r.GetUid() != md.GetUid() {
					keep = append(keep, r)
				}
			}
			if err := ctrlkit.SetOwnerRefs(ctx, c.Client(), c.sets, rs, keep); err != nil && !client.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("release replicaset %s: %w", rmd.GetName(), err))
			}
		case ref == nil && matches && md.GetDeletionTimestamp() == "" && rmd.GetDeletionTimestamp() == "" && !c.sets.ReleasedFrom(rs, md.GetUid()):
			if !rechecked {
				if err := ctrlkit.RecheckOwner(ctx, c.Client(), d); err != nil {
					return out, errors.Join(append(errs, err)...)
				}
				rechecked = true
			}
			refs := append(append([]*apiv1.OwnerReference{}, rmd.GetOwnerReferences()...), ctrlkit.ControllerRef(d, "apps/v1"))
			if err := ctrlkit.SetOwnerRefs(ctx, c.Client(), c.sets, rs, refs); err != nil {
				if !client.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("adopt replicaset %s: %w", rmd.GetName(), err))
				}
				continue
			}
			adopted = append(adopted, rs)
			out = append(out, rs)
		}
	}
	return out, errors.Join(errs...)
}

// rollout is one sync's view of a Deployment and its ReplicaSets.
type rollout struct {
	c          *Controller
	d          *apiv1.Deployment
	all        []*apiv1.ReplicaSet
	newRS      *apiv1.ReplicaSet
	olds       []*apiv1.ReplicaSet // oldest revision first
	progressed bool                // something moved this sync
	created    bool
}

func (r *rollout) split() {
	r.newRS, r.olds = nil, nil
	hash := TemplateHash(r.d.GetSpec().GetTemplate(), r.d.GetStatus().GetCollisionCount())
	want := r.d.GetMetadata().GetName() + "-" + hash
	// Prefer the exact name; else any with an equal template (the newest).
	for _, rs := range r.all {
		if rs.GetMetadata().GetName() == want && SameTemplate(rs.GetSpec().GetTemplate(), r.d.GetSpec().GetTemplate()) {
			r.newRS = rs
		}
	}
	if r.newRS == nil {
		for _, rs := range r.all {
			if rs.GetMetadata().GetDeletionTimestamp() == "" && SameTemplate(rs.GetSpec().GetTemplate(), r.d.GetSpec().GetTemplate()) {
				r.newRS = rs
			}
		}
	}
	for _, rs := range r.all {
		if rs != r.newRS {
			r.olds = append(r.olds, rs)
		}
	}
	sort.SliceStable(r.olds, func(i, j int) bool {
		return Revision(r.olds[i].GetMetadata()) < Revision(r.olds[j].GetMetadata())
	})
}

func (r *rollout) maxRevision() int64 {
	var m int64
	for _, rs := range r.all {
		m = max(m, Revision(rs.GetMetadata()))
	}
	return m
}

// createNew creates the ReplicaSet of the current template, with as many
// replicas as the strategy allows now.
func (r *rollout) createNew(ctx context.Context) error {
	d := r.d
	hash := TemplateHash(d.GetSpec().GetTemplate(), d.GetStatus().GetCollisionCount())
	tmpl := codec.Clone(d.GetSpec().GetTemplate())
	if tmpl.Metadata == nil {
		tmpl.Metadata = &apiv1.ObjectMeta{}
	}
	if tmpl.Metadata.Labels == nil {
		tmpl.Metadata.Labels = map[string]string{}
	}
	tmpl.Metadata.Labels[PodTemplateHashLabel] = hash
	sel := codec.Clone(d.GetSpec().GetSelector())
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[PodTemplateHashLabel] = hash
	labels := map[string]string{}
	for k, v := range tmpl.Metadata.Labels {
		labels[k] = v
	}
	ann := map[string]string{RevisionAnnotation: strconv.FormatInt(r.maxRevision()+1, 10),
		DesiredAnnotation: strconv.Itoa(int(Replicas(d)))}
	if cause := d.GetMetadata().GetAnnotations()[ChangeCauseAnnotation]; cause != "" {
		ann[ChangeCauseAnnotation] = cause
	}
	n := int32(0)
	if d.GetSpec().GetStrategy().GetType() != "Recreate" {
		n = r.newScaleUp(0)
	} else if !r.oldActive() {
		n = Replicas(d)
	}
	rs := &apiv1.ReplicaSet{ApiVersion: "apps/v1", Kind: "ReplicaSet",
		Metadata: &apiv1.ObjectMeta{Name: d.GetMetadata().GetName() + "-" + hash, Namespace: d.GetMetadata().GetNamespace(),
			Labels: labels, Annotations: ann, OwnerReferences: []*apiv1.OwnerReference{ctrlkit.ControllerRef(d, "apps/v1")}},
		Spec: &apiv1.ReplicaSetSpec{Replicas: &n, MinReadySeconds: d.GetSpec().GetMinReadySeconds(), Selector: sel, Template: tmpl}}
	out, err := ctrlkit.Create(ctx, r.c.Client(), r.c.sets, rs)
	if client.IsAlreadyExists(err) {
		// A ReplicaSet of that name but another template (else split would
		// have found it): a hash collision. Count it so the next hash differs.
		if cur, ok := r.c.sets.Get(rs.Metadata.Namespace, rs.Metadata.Name); ok &&
			!SameTemplate(cur.(*apiv1.ReplicaSet).GetSpec().GetTemplate(), d.GetSpec().GetTemplate()) {
			nd := codec.Clone(d)
			if nd.Status == nil {
				nd.Status = &apiv1.DeploymentStatus{}
			}
			cc := d.GetStatus().GetCollisionCount() + 1
			nd.Status.CollisionCount = &cc
			if _, err := ctrlkit.UpdateStatus(ctx, r.c.Client(), r.c.deploys, nd); err != nil {
				return err
			}
		}
		return fmt.Errorf("replicaset %s: %w", rs.Metadata.Name, err)
	}
	if err != nil {
		return fmt.Errorf("create replicaset: %w", err)
	}
	r.c.event(ctx, d, client.EventNormal, "ScalingReplicaSet", fmt.Sprintf("Scaled up replica set %s to %d", rs.Metadata.Name, n))
	r.newRS = out
	r.all = append(r.all, out)
	r.progressed, r.created = true, true
	return nil
}

// bumpRevision makes the new ReplicaSet the highest revision (it is an old
// one again after an undo).
func (r *rollout) bumpRevision(ctx context.Context) error {
	top := r.maxRevision()
	cur := Revision(r.newRS.GetMetadata())
	if cur == top && cur > 0 {
		only := true
		for _, rs := range r.olds {
			if Revision(rs.GetMetadata()) == top {
				only = false
			}
		}
		if only {
			return nil
		}
	}
	rs := codec.Clone(r.newRS)
	if rs.Metadata.Annotations == nil {
		rs.Metadata.Annotations = map[string]string{}
	}
	rs.Metadata.Annotations[RevisionAnnotation] = strconv.FormatInt(top+1, 10)
	if cause := r.d.GetMetadata().GetAnnotations()[ChangeCauseAnnotation]; cause != "" {
		rs.Metadata.Annotations[ChangeCauseAnnotation] = cause
	}
	out, err := ctrlkit.Update(ctx, r.c.Client(), r.c.sets, rs)
	if err != nil {
		return fmt.Errorf("set revision of %s: %w", rs.Metadata.Name, err)
	}
	r.replace(out)
	r.newRS = out
	return nil
}

func (r *rollout) replace(rs *apiv1.ReplicaSet) {
	for i, o := range r.all {
		if o.GetMetadata().GetUid() == rs.GetMetadata().GetUid() {
			r.all[i] = rs
		}
	}
	for i, o := range r.olds {
		if o.GetMetadata().GetUid() == rs.GetMetadata().GetUid() {
			r.olds[i] = rs
		}
	}
}

// scale sets a ReplicaSet's replicas (resourceVersion precondition).
func (r *rollout) scale(ctx context.Context, rs *apiv1.ReplicaSet, n int32) (*apiv1.ReplicaSet, error) {
	if RSReplicas(rs) == n {
		return rs, nil
	}
	next := codec.Clone(rs)
	next.Spec.Replicas = &n
	if next.Metadata.Annotations == nil {
		next.Metadata.Annotations = map[string]string{}
	}
	next.Metadata.Annotations[DesiredAnnotation] = strconv.Itoa(int(Replicas(r.d)))
	out, err := ctrlkit.Update(ctx, r.c.Client(), r.c.sets, next)
	if err != nil {
		return nil, fmt.Errorf("scale replicaset %s to %d: %w", rs.GetMetadata().GetName(), n, err)
	}
	dir := "up"
	if n < RSReplicas(rs) {
		dir = "down"
	}
	r.c.event(ctx, r.d, client.EventNormal, "ScalingReplicaSet", fmt.Sprintf("Scaled %s replica set %s to %d", dir, rs.GetMetadata().GetName(), n))
	r.replace(out)
	r.progressed = true
	return out, nil
}

func (r *rollout) oldActive() bool {
	for _, rs := range r.olds {
		if RSReplicas(rs) > 0 || rs.GetStatus().GetReplicas() > 0 {
			return true
		}
	}
	return false
}

// scalePaused: a paused Deployment only follows spec.replicas when a
// single ReplicaSet is active; it never starts or advances a rollout.
func (r *rollout) scalePaused(ctx context.Context) error {
	var active []*apiv1.ReplicaSet
	for _, rs := range r.all {
		if RSReplicas(rs) > 0 {
			active = append(active, rs)
		}
	}
	target := r.newRS
	if len(active) == 1 {
		target = active[0]
	} else if len(active) > 1 {
		return nil
	}
	if target == nil {
		return nil
	}
	_, err := r.scale(ctx, target, Replicas(r.d))
	return err
}

func (c *Controller) event(ctx context.Context, obj client.Object, typ, reason, msg string) {
	if err := c.rec.Event(ctx, obj, typ, reason, msg); err != nil {
		c.Log.Debug("record event", "err", err)
	}
}

// NewLoop builds the controller for the registry (config: a ctrlkit.Config
// under "deployment").
var NewLoop = ctrlkit.Factory("deployment", New)
