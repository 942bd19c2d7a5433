package volumeprotection

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Controller keeps the protection finalizers. Its keys are "pvc/ns/name"
// and "pv/name".
type Controller struct {
	*ctrlkit.Base
	claims  *ctrlkit.Cache
	volumes *ctrlkit.Cache
	pods    *ctrlkit.Cache
}

// New returns the controller.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{}
	c.Base = ctrlkit.NewBase("volume-protection-controller", cfg, c.sync)
	claim := func(o client.Object) { c.EnqueueKey("pvc/" + client.Key(o)) }
	c.claims = c.Watch("PersistentVolumeClaim", client.EventHandler{OnAdd: claim, OnUpdate: func(_, o client.Object) { claim(o) }})
	volume := func(o client.Object) { c.EnqueueKey("pv/" + o.GetMetadata().GetName()) }
	c.volumes = c.Watch("PersistentVolume", client.EventHandler{OnAdd: volume, OnUpdate: func(_, o client.Object) { volume(o) }})
	// A pod that ends or goes may release the claims it used.
	pod := func(o client.Object) {
		p := o.(*apiv1.Pod)
		for _, name := range claimNames(p) {
			c.EnqueueKey("pvc/" + p.GetMetadata().GetNamespace() + "/" + name)
		}
	}
	c.pods = c.Watch("Pod", client.EventHandler{OnDelete: pod, OnUpdate: func(_, o client.Object) { pod(o) }}).Indexed(podClaims)
	return c
}

// NewLoop is the registry factory ("volumeprotection").
var NewLoop = ctrlkit.Factory("volumeprotection", New)

func claimNames(p *apiv1.Pod) []string {
	var names []string
	for _, v := range p.GetSpec().GetVolumes() {
		if n := v.GetPersistentVolumeClaim().GetClaimName(); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// terminated: a pod whose containers will not run again no longer uses
// its claims, even while its object stays.
func terminated(p *apiv1.Pod) bool {
	ph := p.GetStatus().GetPhase()
	return ph == ctrlkit.PodSucceeded || ph == ctrlkit.PodFailed
}

// podClaims indexes pods that have not terminated by the claims they use
// ("ns/claim").
func podClaims(o client.Object) []string {
	p := o.(*apiv1.Pod)
	if terminated(p) {
		return nil
	}
	var keys []string
	for _, n := range claimNames(p) {
		keys = append(keys, p.GetMetadata().GetNamespace()+"/"+n)
	}
	return keys
}

func (c *Controller) sync(ctx context.Context, key string) error {
	if name, ok := strings.CutPrefix(key, "pv/"); ok {
		return c.syncVolume(ctx, name)
	}
	ns, name := ctrlkit.SplitKey(strings.TrimPrefix(key, "pvc/"))
	o, ok := c.claims.Get(ns, name)
	if !ok {
		return nil
	}
	claim := o.(*apiv1.PersistentVolumeClaim)
	md := claim.GetMetadata()
	has := slices.Contains(md.GetFinalizers(), kinds.PVCProtectionFinalizer)
	if md.GetDeletionTimestamp() == "" {
		if has {
			return nil
		}
		next := codec.Clone(claim)
		next.Metadata.Finalizers = append(next.Metadata.Finalizers, kinds.PVCProtectionFinalizer)
		_, err := ctrlkit.Update(ctx, c.Client(), c.claims, next)
		return wrap(err, "protect claim %s/%s: %w", ns, name)
	}
	if !has {
		return nil
	}
	if users := c.pods.ByIndex(ns + "/" + name); len(users) > 0 {
		return nil // a pod event brings the claim back
	}
	next := codec.Clone(claim)
	next.Metadata.Finalizers = slices.DeleteFunc(next.Metadata.Finalizers, func(f string) bool { return f == kinds.PVCProtectionFinalizer })
	_, err := ctrlkit.Update(ctx, c.Client(), c.claims, next)
	return wrap(err, "release claim %s/%s: %w", ns, name)
}

func (c *Controller) syncVolume(ctx context.Context, name string) error {
	o, ok := c.volumes.Get("", name)
	if !ok {
		return nil
	}
	pv := o.(*apiv1.PersistentVolume)
	md := pv.GetMetadata()
	has := slices.Contains(md.GetFinalizers(), kinds.PVProtectionFinalizer)
	if md.GetDeletionTimestamp() == "" {
		if has {
			return nil
		}
		next := codec.Clone(pv)
		next.Metadata.Finalizers = append(next.Metadata.Finalizers, kinds.PVProtectionFinalizer)
		_, err := ctrlkit.Update(ctx, c.Client(), c.volumes, next)
		return wrap(err, "protect volume %s: %w", name)
	}
	if !has || pv.GetStatus().GetPhase() == kinds.VolumeBound {
		return nil // the volume controller's Released update brings it back
	}
	next := codec.Clone(pv)
	next.Metadata.Finalizers = slices.DeleteFunc(next.Metadata.Finalizers, func(f string) bool { return f == kinds.PVProtectionFinalizer })
	_, err := ctrlkit.Update(ctx, c.Client(), c.volumes, next)
	return wrap(err, "release volume %s: %w", name)
}

// wrap names what failed; nil, and an object deleted meanwhile, are nil.
func wrap(err error, format string, args ...any) error {
	if err == nil || client.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf(format, append(args, err)...)
}
