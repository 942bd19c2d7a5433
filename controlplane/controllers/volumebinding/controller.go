package volumebinding

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Config is the controller's configuration (registered name
// "persistentvolume").
type Config struct {
	ctrlkit.Config
	// AgentTimeout is how long a deleted provisioned volume waits for the
	// agent of its (Ready) node to remove its directory before it is
	// marked Failed with a VolumeFailedDelete event saying so. A node not
	// Ready marks it at once. The volume keeps waiting either way: the
	// agent may come back.
	AgentTimeout time.Duration
}

// DefaultAgentTimeout is Config.AgentTimeout's default: far above an
// agent's reaction (a watch event), well below a user's patience.
const DefaultAgentTimeout = 2 * time.Minute

// Controller binds claims and provisions local volumes. Its keys are
// "namespace/name" for claims and "name" for volumes (cluster-scoped).
type Controller struct {
	*ctrlkit.Base
	agentTimeout time.Duration
	claims       *ctrlkit.Cache
	volumes      *ctrlkit.Cache
	classes      *ctrlkit.Cache
	nodes        *ctrlkit.Cache
	pods         *ctrlkit.Cache
	rec          *client.Recorder
}

// New returns the controller with DefaultAgentTimeout.
func New(cfg ctrlkit.Config) *Controller {
	return NewWithConfig(Config{Config: cfg})
}

// NewWithConfig returns the controller.
func NewWithConfig(full Config) *Controller {
	cfg := full.Config
	c := &Controller{agentTimeout: full.AgentTimeout}
	if c.agentTimeout <= 0 {
		c.agentTimeout = DefaultAgentTimeout
	}
	c.Base = ctrlkit.NewBase("persistentvolume-binder", cfg, c.sync)
	c.rec = client.NewRecorder(cfg.Client, "persistentvolume-controller", "")
	// A claim's change also requeues its volume, whose phase follows it.
	claim := func(o client.Object) {
		c.Enqueue(o)
		if vn := o.(*apiv1.PersistentVolumeClaim).GetSpec().GetVolumeName(); vn != "" {
			c.EnqueueKey(vn)
		}
	}
	c.claims = c.Watch("PersistentVolumeClaim", client.EventHandler{OnAdd: claim, OnDelete: claim,
		OnUpdate: func(_, o client.Object) { claim(o) }})
	pending := func(client.Object) {
		for _, o := range c.claims.List() {
			if o.(*apiv1.PersistentVolumeClaim).GetSpec().GetVolumeName() == "" {
				c.Enqueue(o)
			}
		}
	}
	// A volume's change requeues its claim; a free volume (new, or
	// released from its reservation) may fit any unbound claim.
	volume := func(o client.Object) {
		c.Enqueue(o)
		if ref := o.(*apiv1.PersistentVolume).GetSpec().GetClaimRef(); ref != nil {
			c.EnqueueKey(ref.GetNamespace() + "/" + ref.GetName())
		} else {
			pending(o)
		}
	}
	c.volumes = c.Watch("PersistentVolume", client.EventHandler{OnAdd: volume, OnDelete: volume,
		OnUpdate: func(_, o client.Object) { volume(o) }})
	c.classes = c.Watch("StorageClass", client.EventHandler{OnAdd: pending, OnUpdate: func(_, o client.Object) { pending(o) }})
	// A node that goes releases the deleted volumes waiting for its agent;
	// one whose readiness changes changes what they say they wait for.
	nodeVolumes := func(o client.Object) {
		for _, v := range c.volumes.List() {
			if v.GetMetadata().GetAnnotations()[kinds.SelectedNodeAnnotation] == o.GetMetadata().GetName() {
				c.Enqueue(v)
			}
		}
	}
	c.nodes = c.Watch("Node", client.EventHandler{OnDelete: nodeVolumes, OnUpdate: func(old, cur client.Object) {
		if nodeReady(old.(*apiv1.Node)) != nodeReady(cur.(*apiv1.Node)) {
			nodeVolumes(cur)
		}
	}})
	// A pod bound to a node selects the node of its unbound
	// WaitForFirstConsumer claims.
	pod := func(o client.Object) {
		p := o.(*apiv1.Pod)
		if p.GetSpec().GetNodeName() == "" {
			return
		}
		for _, v := range p.GetSpec().GetVolumes() {
			if name := v.GetPersistentVolumeClaim().GetClaimName(); name != "" {
				c.EnqueueKey(p.GetMetadata().GetNamespace() + "/" + name)
			}
		}
	}
	c.pods = c.Watch("Pod", client.EventHandler{OnAdd: pod, OnUpdate: func(_, o client.Object) { pod(o) }}).Indexed(podClaims)
	return c
}

// NewLoop is the registry factory ("persistentvolume"): its config is a
// Config (a zero ctrlkit.Config in it: the defaults), a ctrlkit.Config, or
// none.
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, ok := d.Configs["persistentvolume"].(Config)
	if !ok {
		return ctrlkit.Factory("persistentvolume", New)(d)
	}
	if cfg.Config.Workers == 0 {
		cfg.Config = ctrlkit.DefaultConfig(d.Client)
	}
	dd := d
	dd.Configs = map[string]any{"persistentvolume": cfg.Config}
	base, err := ctrlkit.FromDeps(dd, "persistentvolume")
	if err != nil {
		return nil, err
	}
	cfg.Config = base
	return NewWithConfig(cfg), nil
}

// podClaims indexes bound pods by the claims they use ("ns/claim").
func podClaims(o client.Object) []string {
	p := o.(*apiv1.Pod)
	if p.GetSpec().GetNodeName() == "" || ctrlkit.IsPodTerminating(p) {
		return nil
	}
	var keys []string
	for _, v := range p.GetSpec().GetVolumes() {
		if name := v.GetPersistentVolumeClaim().GetClaimName(); name != "" {
			keys = append(keys, p.GetMetadata().GetNamespace()+"/"+name)
		}
	}
	return keys
}

func (c *Controller) sync(ctx context.Context, key string) error {
	if !strings.Contains(key, "/") {
		return c.syncVolume(ctx, key)
	}
	ns, name := ctrlkit.SplitKey(key)
	o, ok := c.claims.Get(ns, name)
	if !ok {
		return nil
	}
	claim := o.(*apiv1.PersistentVolumeClaim)
	if claim.GetMetadata().GetDeletionTimestamp() != "" {
		return nil
	}
	class, set := kinds.ClaimClass(claim)
	if !set {
		return c.giveDefaultClass(ctx, claim)
	}
	if vn := claim.GetSpec().GetVolumeName(); vn != "" {
		vo, ok := c.volumes.Get("", vn)
		if !ok {
			if claim.GetStatus().GetPhase() == kinds.ClaimBound {
				return c.claimStatus(ctx, claim, kinds.ClaimLost, nil)
			}
			return nil // a claim naming a volume that is not there yet waits for it
		}
		return c.bind(ctx, claim, vo.(*apiv1.PersistentVolume))
	}
	if pv := BestVolume(claim, class, c.volumeList()); pv != nil {
		return c.bind(ctx, claim, pv)
	}
	return c.provision(ctx, claim, class)
}

func (c *Controller) volumeList() []*apiv1.PersistentVolume {
	objs := c.volumes.List()
	out := make([]*apiv1.PersistentVolume, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*apiv1.PersistentVolume))
	}
	return out
}

func (c *Controller) giveDefaultClass(ctx context.Context, claim *apiv1.PersistentVolumeClaim) error {
	var classes []*apiv1.StorageClass
	for _, o := range c.classes.List() {
		classes = append(classes, o.(*apiv1.StorageClass))
	}
	def := DefaultClass(classes)
	if def == "" {
		return nil // without a default class the claim binds to class-less volumes only once it says ""
	}
	next := codec.Clone(claim)
	next.Spec.StorageClassName = &def
	_, err := ctrlkit.Update(ctx, c.Client(), c.claims, next)
	return ignoreGone(err)
}

// bind binds claim and pv to each other: the volume first (it is the
// contended side: a second claim finds it taken), then the claim, then the
// statuses.
func (c *Controller) bind(ctx context.Context, claim *apiv1.PersistentVolumeClaim, pv *apiv1.PersistentVolume) error {
	md := claim.GetMetadata()
	if ref := pv.GetSpec().GetClaimRef(); ref == nil || ref.GetUid() == "" {
		if ref != nil && (ref.GetNamespace() != md.GetNamespace() || ref.GetName() != md.GetName()) {
			return nil // reserved for another claim
		}
		next := codec.Clone(pv)
		next.Spec.ClaimRef = &apiv1.ObjectReference{Kind: "PersistentVolumeClaim", ApiVersion: "v1",
			Namespace: md.GetNamespace(), Name: md.GetName(), Uid: md.GetUid(), ResourceVersion: md.GetResourceVersion()}
		updated, err := ctrlkit.Update(ctx, c.Client(), c.volumes, next)
		if err != nil {
			return ignoreGone(fmt.Errorf("bind volume %s to claim %s/%s: %w", pv.GetMetadata().GetName(), md.GetNamespace(), md.GetName(), err))
		}
		pv = updated
	} else if ref.GetUid() != md.GetUid() {
		if claim.GetStatus().GetPhase() == kinds.ClaimBound {
			return c.claimStatus(ctx, claim, kinds.ClaimLost, nil)
		}
		return nil // the named volume belongs to another claim
	}
	if err := c.volumeStatus(ctx, pv, kinds.VolumeBound); err != nil {
		return err
	}
	if claim.GetSpec().GetVolumeName() != pv.GetMetadata().GetName() {
		next := codec.Clone(claim)
		next.Spec.VolumeName = pv.GetMetadata().GetName()
		if next.Metadata.Annotations == nil {
			next.Metadata.Annotations = map[string]string{}
		}
		next.Metadata.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
		updated, err := ctrlkit.Update(ctx, c.Client(), c.claims, next)
		if err != nil {
			return ignoreGone(fmt.Errorf("bind claim %s/%s to volume %s: %w", md.GetNamespace(), md.GetName(), pv.GetMetadata().GetName(), err))
		}
		claim = updated
		c.event(ctx, claim, client.EventNormal, "Bound", "bound to volume "+pv.GetMetadata().GetName())
	}
	return c.claimStatus(ctx, claim, kinds.ClaimBound, pv)
}

func (c *Controller) claimStatus(ctx context.Context, claim *apiv1.PersistentVolumeClaim, phase string, pv *apiv1.PersistentVolume) error {
	st := &apiv1.PersistentVolumeClaimStatus{Phase: phase}
	if pv != nil {
		st.AccessModes = pv.GetSpec().GetAccessModes()
		st.Capacity = pv.GetSpec().GetCapacity()
	}
	if proto.Equal(st, claim.GetStatus()) {
		return nil
	}
	next := codec.Clone(claim)
	next.Status = st
	_, err := ctrlkit.UpdateStatus(ctx, c.Client(), c.claims, next)
	return ignoreGone(err)
}

func (c *Controller) volumeStatus(ctx context.Context, pv *apiv1.PersistentVolume, phase string) error {
	if pv.GetStatus().GetPhase() == phase {
		return nil
	}
	next := codec.Clone(pv)
	next.Status = &apiv1.PersistentVolumeStatus{Phase: phase}
	_, err := ctrlkit.UpdateStatus(ctx, c.Client(), c.volumes, next)
	return ignoreGone(err)
}

// provision makes a volume for claim when its class's provisioner is the
// built-in local one, on the node selected for it.
func (c *Controller) provision(ctx context.Context, claim *apiv1.PersistentVolumeClaim, class string) error {
	o, ok := c.classes.Get("", class)
	if !ok {
		return nil // a static class, or one not made yet: the claim waits
	}
	sc := o.(*apiv1.StorageClass)
	if sc.GetProvisioner() != kinds.LocalProvisioner {
		if p := sc.GetProvisioner(); p != kinds.NoProvisioner && claim.GetStatus().GetPhase() != kinds.ClaimBound {
			// Kubernetes' words: an external provisioner would make it;
			// Skiff runs none but its own.
			c.event(ctx, claim, client.EventNormal, "ExternalProvisioning",
				"Waiting for a volume to be created either by the external provisioner '"+p+"' or manually by the system administrator (Skiff provisions only "+kinds.LocalProvisioner+")")
		}
		return nil
	}
	md := claim.GetMetadata()
	node := md.GetAnnotations()[kinds.SelectedNodeAnnotation]
	if node == "" {
		node = c.consumerNode(md.GetNamespace(), md.GetName())
		if node == "" {
			return nil // no pod using it is scheduled yet
		}
		next := codec.Clone(claim)
		if next.Metadata.Annotations == nil {
			next.Metadata.Annotations = map[string]string{}
		}
		next.Metadata.Annotations[kinds.SelectedNodeAnnotation] = node
		next.Metadata.Annotations["volume.kubernetes.io/storage-provisioner"] = kinds.LocalProvisioner
		if _, err := ctrlkit.Update(ctx, c.Client(), c.claims, next); err != nil {
			return ignoreGone(fmt.Errorf("select node %s for claim %s/%s: %w", node, md.GetNamespace(), md.GetName(), err))
		}
		return nil // the update brings the claim back with its node
	}
	dir := DefaultLocalVolumeDir
	hostname := node
	if no, ok := c.nodes.Get("", node); ok {
		nmd := no.GetMetadata()
		if d := nmd.GetAnnotations()[LocalVolumeDirAnnotation]; d != "" {
			dir = d
		}
		if h := nmd.GetLabels()[HostnameLabel]; h != "" {
			hostname = h
		}
	}
	name := "pvc-" + md.GetUid()
	pv := &apiv1.PersistentVolume{
		// The node's name (the authorizer lets that node, and only it, read
		// the volume and drop ProvisionerFinalizer once its directory is
		// gone; its agent watches the volumes labelled with it) and the
		// finalizer that waits for it.
		Metadata: &apiv1.ObjectMeta{Name: name, Annotations: map[string]string{ProvisionedByAnnotation: kinds.LocalProvisioner,
			kinds.SelectedNodeAnnotation: node}, Labels: map[string]string{kinds.LocalVolumeNodeLabel: node},
			Finalizers: []string{kinds.ProvisionerFinalizer}},
		Spec: &apiv1.PersistentVolumeSpec{
			Capacity:                      map[string]string{"storage": claim.GetSpec().GetResources().GetRequests()["storage"]},
			AccessModes:                   claim.GetSpec().GetAccessModes(),
			PersistentVolumeReclaimPolicy: proto.String(sc.GetReclaimPolicy()),
			StorageClassName:              class,
			Local:                         &apiv1.LocalVolumeSource{Path: path.Join(dir, name)},
			NodeAffinity: &apiv1.VolumeNodeAffinity{Required: &apiv1.NodeSelector{NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{
				MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: HostnameLabel, Operator: "In", Values: []string{hostname}}}}}}},
			ClaimRef: &apiv1.ObjectReference{Kind: "PersistentVolumeClaim", ApiVersion: "v1",
				Namespace: md.GetNamespace(), Name: md.GetName(), Uid: md.GetUid()},
		},
	}
	kinds.SetTypeMeta(pv, "v1", "PersistentVolume")
	created, err := ctrlkit.Create(ctx, c.Client(), c.volumes, pv)
	switch {
	case client.IsAlreadyExists(err):
		return nil
	case err != nil:
		c.event(ctx, claim, client.EventWarning, "ProvisioningFailed", "make volume "+name+" on node "+node+": "+client.Reason(err))
		return fmt.Errorf("provision %s for claim %s/%s: %w", name, md.GetNamespace(), md.GetName(), err)
	}
	c.event(ctx, claim, client.EventNormal, "ProvisioningSucceeded", "made volume "+name+" on node "+node)
	return c.bind(ctx, claim, created)
}

// consumerNode is the node of a bound pod using the claim, "" if none.
func (c *Controller) consumerNode(ns, claim string) string {
	for _, o := range c.pods.ByIndex(ns + "/" + claim) {
		if n := o.(*apiv1.Pod).GetSpec().GetNodeName(); n != "" {
			return n
		}
	}
	return ""
}

// syncVolume keeps a volume's phase and reclaims it when its claim is gone:
// Released first (so pv-protection lets it go), then, with reclaim policy
// Delete, deleted; a provisioned volume then waits for its node's agent to
// remove its directory (ProvisionerFinalizer), unless that node is gone.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	o, ok := c.volumes.Get("", name)
	if !ok {
		return nil
	}
	pv := o.(*apiv1.PersistentVolume)
	if node := provisionedOn(pv); node != "" && pv.GetMetadata().GetLabels()[kinds.LocalVolumeNodeLabel] != node {
		// Provisioned before volumes were labelled: label it, so its
		// node's agent sees it (the update brings the volume back).
		next := codec.Clone(pv)
		if next.Metadata.Labels == nil {
			next.Metadata.Labels = map[string]string{}
		}
		next.Metadata.Labels[kinds.LocalVolumeNodeLabel] = node
		_, err := ctrlkit.Update(ctx, c.Client(), c.volumes, next)
		return ignoreGone(err)
	}
	ref := pv.GetSpec().GetClaimRef()
	claimGone := false
	if ref != nil && ref.GetUid() != "" {
		co, ok := c.claims.Get(ref.GetNamespace(), ref.GetName())
		claimGone = !ok || co.GetMetadata().GetUid() != ref.GetUid()
	}
	if pv.GetMetadata().GetDeletionTimestamp() != "" {
		if claimGone && pv.GetStatus().GetPhase() == kinds.VolumeBound {
			return c.volumeStatus(ctx, pv, kinds.VolumeReleased)
		}
		return c.releaseOrphan(ctx, pv)
	}
	if ref == nil {
		return c.volumeStatus(ctx, pv, kinds.VolumeAvailable)
	}
	if !claimGone {
		co, ok := c.claims.Get(ref.GetNamespace(), ref.GetName())
		if ok && co.(*apiv1.PersistentVolumeClaim).GetSpec().GetVolumeName() == name {
			return c.volumeStatus(ctx, pv, kinds.VolumeBound)
		}
		return c.volumeStatus(ctx, pv, kinds.VolumeAvailable) // reserved; the claim's sync binds it
	}
	// The claim it was bound to is gone.
	if pv.GetStatus().GetPhase() != kinds.VolumeReleased {
		why := "reclaim policy Retain keeps the volume and its data"
		if pv.GetSpec().GetPersistentVolumeReclaimPolicy() == kinds.ReclaimDelete {
			why = "reclaim policy Delete"
		}
		c.event(ctx, pv, client.EventNormal, "VolumeReleased", "claim "+ref.GetNamespace()+"/"+ref.GetName()+" is gone; "+why)
		return c.volumeStatus(ctx, pv, kinds.VolumeReleased) // the update brings the volume back
	}
	if pv.GetSpec().GetPersistentVolumeReclaimPolicy() != kinds.ReclaimDelete {
		return nil
	}
	err := ctrlkit.Delete(ctx, c.Client(), c.volumes, pv, "")
	if err == nil {
		c.event(ctx, pv, client.EventNormal, "VolumeDelete", "claim "+ref.GetNamespace()+"/"+ref.GetName()+" is gone; reclaim policy Delete")
	}
	return ignoreGone(err)
}

// releaseOrphan drops ProvisionerFinalizer from a deleted provisioned
// volume whose node is gone: no agent is left to remove its directory.
// While the node is there, its agent removes the directory and then the
// finalizer; a node not Ready, or an agent silent past AgentTimeout,
// leaves the volume waiting visibly (awaitAgent).
func (c *Controller) releaseOrphan(ctx context.Context, pv *apiv1.PersistentVolume) error {
	md := pv.GetMetadata()
	node := md.GetAnnotations()[kinds.SelectedNodeAnnotation]
	if !slices.Contains(md.GetFinalizers(), kinds.ProvisionerFinalizer) || node == "" {
		return nil
	}
	if no, ok := c.nodes.Get("", node); ok {
		return c.awaitAgent(ctx, pv, no.(*apiv1.Node))
	}
	next := codec.Clone(pv)
	next.Metadata.Finalizers = slices.DeleteFunc(next.Metadata.Finalizers, func(f string) bool { return f == kinds.ProvisionerFinalizer })
	if _, err := ctrlkit.Update(ctx, c.Client(), c.volumes, next); err != nil {
		return ignoreGone(fmt.Errorf("release volume %s of removed node %s: %w", md.GetName(), node, err))
	}
	c.event(ctx, pv, client.EventWarning, "VolumeOrphaned", "node "+node+" is gone: the volume's directory there was not removed")
	return nil
}

// awaitAgent marks a deleted volume that its node's agent has not
// released Failed, with a VolumeFailedDelete event naming why (Kubernetes'
// phase and reason for a deletion that does not happen): at once when
// the node is not Ready, else once AgentTimeout has passed since the
// deletion (checked again then).
func (c *Controller) awaitAgent(ctx context.Context, pv *apiv1.PersistentVolume, node *apiv1.Node) error {
	md := pv.GetMetadata()
	name := node.GetMetadata().GetName()
	var why string
	if ready, since := nodeReadyCondition(node); ready != "True" {
		if ready == "" {
			ready = "not reported"
		}
		why = fmt.Sprintf("node %s is not ready (Ready %s%s): its agent cannot remove the volume's directory; the volume is deleted when it is back, or when the node is removed", name, ready, since)
	} else {
		deleted, err := time.Parse(time.RFC3339, md.GetDeletionTimestamp())
		if err != nil {
			return nil
		}
		if left := deleted.Add(c.agentTimeout).Sub(c.Now()); left > 0 {
			c.EnqueueAfter(md.GetName(), left)
			return nil
		}
		why = fmt.Sprintf("the agent of node %s has not removed the volume's directory within %s of its deletion (is it running? its log says why); the volume is deleted once it has", name, c.agentTimeout)
	}
	if st := pv.GetStatus(); st.GetPhase() == kinds.VolumeFailed && st.GetMessage() == why {
		return nil
	}
	c.event(ctx, pv, client.EventWarning, "VolumeFailedDelete", why)
	next := codec.Clone(pv)
	next.Status = &apiv1.PersistentVolumeStatus{Phase: kinds.VolumeFailed, Reason: "VolumeFailedDelete", Message: why}
	_, err := ctrlkit.UpdateStatus(ctx, c.Client(), c.volumes, next)
	return ignoreGone(err)
}

// nodeReadyCondition is a node's Ready status ("" when it reports none)
// and, for messages, " since <time>".
func nodeReadyCondition(n *apiv1.Node) (string, string) {
	for _, cond := range n.GetStatus().GetConditions() {
		if cond.GetType() == "Ready" {
			since := ""
			if t := cond.GetLastTransitionTime(); t != "" {
				since = " since " + t
			}
			return cond.GetStatus(), since
		}
	}
	return "", ""
}

func nodeReady(n *apiv1.Node) bool {
	s, _ := nodeReadyCondition(n)
	return s == "True"
}

// provisionedOn is the node the built-in local provisioner made pv on, ""
// for any other volume.
func provisionedOn(pv *apiv1.PersistentVolume) string {
	a := pv.GetMetadata().GetAnnotations()
	if a[ProvisionedByAnnotation] != kinds.LocalProvisioner {
		return ""
	}
	return a[kinds.SelectedNodeAnnotation]
}

func ignoreGone(err error) error {
	if client.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *Controller) event(ctx context.Context, obj client.Object, typ, reason, msg string) {
	if err := c.rec.Event(ctx, obj, typ, reason, msg); err != nil && !errors.Is(err, context.Canceled) {
		c.Log.Debug("record event", "err", err)
	}
}
