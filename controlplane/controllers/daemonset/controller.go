package daemonset

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// RevisionLabel carries the hash of the template a pod was made from.
const RevisionLabel = "controller-revision-hash"

// Controller reconciles DaemonSets.
type Controller struct {
	*ctrlkit.Base
	sets  *ctrlkit.Cache
	nodes *ctrlkit.Cache
	pods  *ctrlkit.Cache
	rec   *client.Recorder
}

// New returns the DaemonSet controller.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{}
	c.Base = ctrlkit.NewBase("daemonset-controller", cfg, c.sync)
	c.rec = client.NewRecorder(cfg.Client, "daemonset-controller", "")
	c.sets = c.Watch("DaemonSet", c.EnqueueHandler())
	all := func(client.Object) {
		for _, ds := range c.sets.List() {
			c.Enqueue(ds)
		}
	}
	c.nodes = c.Watch("Node", client.EventHandler{OnAdd: all, OnDelete: all, OnUpdate: func(old, cur client.Object) {
		if nodeChanged(old.(*apiv1.Node), cur.(*apiv1.Node)) {
			all(cur)
		}
	}})
	owner := func(o client.Object) {
		md := o.GetMetadata()
		if ref := ctrlkit.ControllerOf(md); ref != nil && ref.GetKind() == "DaemonSet" {
			c.EnqueueKey(md.GetNamespace() + "/" + ref.GetName())
		}
	}
	c.pods = c.Watch("Pod", client.EventHandler{OnAdd: owner, OnDelete: owner, OnUpdate: func(_, o client.Object) { owner(o) }}).Indexed(ctrlkit.ByOwner)
	return c
}

// NewLoop builds the controller for the registry (config: a ctrlkit.Config
// under "daemonset").
var NewLoop = ctrlkit.Factory("daemonset", New)

// nodeChanged: what eligibility depends on changed (not a heartbeat).
func nodeChanged(a, b *apiv1.Node) bool {
	return !proto.Equal(a.GetSpec(), b.GetSpec()) || !proto.Equal(
		&apiv1.ObjectMeta{Labels: a.GetMetadata().GetLabels()}, &apiv1.ObjectMeta{Labels: b.GetMetadata().GetLabels()})
}

// Placement says whether a DaemonSet pod should start on node, and whether
// one already there may keep running.
func Placement(spec *apiv1.PodSpec, node *apiv1.Node) (shouldRun, shouldContinue bool) {
	labels := node.GetMetadata().GetLabels()
	for k, v := range spec.GetNodeSelector() {
		if labels[k] != v {
			return false, false
		}
	}
	if req := spec.GetAffinity().GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution(); req != nil && !matchesNodeSelector(req, node) {
		return false, false
	}
	shouldRun, shouldContinue = true, true
	for _, t := range node.GetSpec().GetTaints() {
		if t.GetEffect() != "NoSchedule" && t.GetEffect() != "NoExecute" {
			continue
		}
		if tolerated(spec.GetTolerations(), t) {
			continue
		}
		shouldRun = false
		if t.GetEffect() == "NoExecute" {
			shouldContinue = false
		}
	}
	return shouldRun, shouldContinue
}

func tolerated(tols []*apiv1.Toleration, t *apiv1.Taint) bool {
	for _, tol := range tols {
		if tol.GetEffect() != "" && tol.GetEffect() != t.GetEffect() {
			continue
		}
		if tol.GetKey() == "" && tol.GetOperator() == "Exists" {
			return true
		}
		if tol.GetKey() != t.GetKey() {
			continue
		}
		if tol.GetOperator() == "Exists" || tol.GetValue() == t.GetValue() {
			return true
		}
	}
	return false
}

func matchesNodeSelector(sel *apiv1.NodeSelector, node *apiv1.Node) bool {
	labels := node.GetMetadata().GetLabels()
	for _, term := range sel.GetNodeSelectorTerms() {
		ok := true
		for _, r := range term.GetMatchExpressions() {
			v, has := labels[r.GetKey()]
			in := false
			for _, x := range r.GetValues() {
				in = in || (has && v == x)
			}
			switch r.GetOperator() {
			case "In":
				ok = ok && in
			case "NotIn":
				ok = ok && !in
			case "Exists":
				ok = ok && has
			case "DoesNotExist":
				ok = ok && !has
			default:
				ok = false
			}
		}
		for _, r := range term.GetMatchFields() {
			in := false
			for _, x := range r.GetValues() {
				in = in || (r.GetKey() == "metadata.name" && node.GetMetadata().GetName() == x)
			}
			ok = ok && ((r.GetOperator() == "In" && in) || (r.GetOperator() == "NotIn" && !in))
		}
		if ok {
			return true
		}
	}
	return false
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := ctrlkit.SplitKey(key)
	obj, ok := c.sets.Get(ns, name)
	if !ok {
		return nil
	}
	ds := obj.(*apiv1.DaemonSet)
	hash := deployment.TemplateHash(ds.GetSpec().GetTemplate(), ds.GetStatus().GetCollisionCount())
	byNode := map[string][]*apiv1.Pod{}
	for _, p := range ctrlkit.OwnedPods(c.pods, ds.GetMetadata().GetUid(), "") {
		byNode[p.GetSpec().GetNodeName()] = append(byNode[p.GetSpec().GetNodeName()], p)
	}
	nodes := map[string]*apiv1.Node{}
	for _, o := range c.nodes.List() {
		nodes[o.GetMetadata().GetName()] = o.(*apiv1.Node)
	}
	var errs []error
	if ds.GetMetadata().GetDeletionTimestamp() == "" {
		errs = append(errs, c.manage(ctx, ds, hash, nodes, byNode))
	}
	errs = append(errs, c.writeStatus(ctx, ds, hash, nodes, byNode))
	return errors.Join(errs...)
}

// nodeState is one eligible node's pods of the DaemonSet.
type nodeState struct {
	node        string
	updated     *apiv1.Pod // active pod of the current template
	old         []*apiv1.Pod
	terminating bool
}

func (c *Controller) manage(ctx context.Context, ds *apiv1.DaemonSet, hash string, nodes map[string]*apiv1.Node, byNode map[string][]*apiv1.Pod) error {
	var create []string
	var del []*apiv1.Pod
	var states []*nodeState
	spec := ds.GetSpec().GetTemplate().GetSpec()
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for nodeName, pods := range byNode {
		if _, ok := nodes[nodeName]; !ok {
			for _, p := range pods {
				if !ctrlkit.IsPodTerminating(p) {
					del = append(del, p) // node gone
				}
			}
		}
	}
	for _, n := range names {
		shouldRun, shouldContinue := Placement(spec, nodes[n])
		st := &nodeState{node: n}
		for _, p := range byNode[n] {
			switch {
			case ctrlkit.IsPodTerminating(p):
				st.terminating = true
			case p.GetStatus().GetPhase() == ctrlkit.PodFailed || p.GetStatus().GetPhase() == ctrlkit.PodSucceeded:
				del = append(del, p) // a daemon pod that exited is replaced
			case !shouldContinue:
				del = append(del, p)
			case p.GetMetadata().GetLabels()[RevisionLabel] == hash && st.updated == nil:
				st.updated = p
			case p.GetMetadata().GetLabels()[RevisionLabel] == hash:
				del = append(del, p) // a duplicate on this node
			default:
				st.old = append(st.old, p)
			}
		}
		if !shouldContinue {
			continue
		}
		if st.updated == nil && len(st.old) == 0 && shouldRun && !st.terminating {
			create = append(create, n)
		}
		states = append(states, st) // also podless nodes: they count as unavailable
	}
	if ds.GetSpec().GetUpdateStrategy().GetType() != "OnDelete" {
		c2, d2 := c.rollingUpdate(ds, states)
		create, del = append(create, c2...), append(del, d2...)
	}
	var errs []error
	ref := ctrlkit.ControllerRef(ds, "apps/v1")
	tmpl := codec.Clone(ds.GetSpec().GetTemplate())
	if tmpl.Metadata == nil {
		tmpl.Metadata = &apiv1.ObjectMeta{}
	}
	if tmpl.Metadata.Labels == nil {
		tmpl.Metadata.Labels = map[string]string{}
	}
	tmpl.Metadata.Labels[RevisionLabel] = hash
	md := ds.GetMetadata()
	// Slow-start waves, each one call: a new DaemonSet on 5,000 nodes is
	// thirteen calls rather than 5,000 in a row.
	created, err := ctrlkit.SlowStartBatches(create, func(nodes []string) ([]error, error) {
		pods := make([]*apiv1.Pod, len(nodes))
		for i, n := range nodes {
			pods[i] = ctrlkit.PodFromTemplate(tmpl, md.GetNamespace(), md.GetName()+"-"+ctrlkit.NameSuffix(md.GetUid(), n, hash), ref)
			pods[i].Spec.NodeName = n
		}
		return ctrlkit.CreateMany(ctx, c.Client(), c.pods, pods)
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("create pods: %w", err))
	}
	for _, p := range del {
		if err := ctrlkit.Delete(ctx, c.Client(), c.pods, p, ""); err != nil {
			errs = append(errs, fmt.Errorf("delete pod %s: %w", p.GetMetadata().GetName(), err))
		}
	}
	if len(created) > 0 {
		c.event(ctx, ds, client.EventNormal, "SuccessfulCreate", fmt.Sprintf("Created %d pod(s)", len(created)))
	}
	return errors.Join(errs...)
}

// rollingUpdate replaces old pods: with maxSurge 0 it deletes old pods
// while fewer than maxUnavailable nodes lack an available pod (the node
// gets its new pod on a later sync); with maxSurge it starts new pods next
// to old ones and deletes an old pod once its replacement is available.
func (c *Controller) rollingUpdate(ds *apiv1.DaemonSet, states []*nodeState) (create []string, del []*apiv1.Pod) {
	ru := ds.GetSpec().GetUpdateStrategy().GetRollingUpdate()
	total := len(states)
	maxUnavailable, err := kinds.IntOrPercent(orZero(ru.GetMaxUnavailable(), "1"), total, true)
	if err != nil {
		maxUnavailable = 1
	}
	maxSurge, err := kinds.IntOrPercent(orZero(ru.GetMaxSurge(), "0"), total, true)
	if err != nil {
		maxSurge = 0
	}
	now := c.Now()
	minReady := ds.GetSpec().GetMinReadySeconds()
	available := func(p *apiv1.Pod) bool {
		ok, left := ctrlkit.IsPodAvailable(p, minReady, now)
		if left > 0 {
			c.EnqueueAfter(client.Key(ds), left)
		}
		return ok
	}
	unavailable, surging := 0, 0
	var candidates []*nodeState
	for _, st := range states {
		nodeAvailable := (st.updated != nil && available(st.updated))
		for _, p := range st.old {
			nodeAvailable = nodeAvailable || available(p)
		}
		if !nodeAvailable {
			unavailable++
		}
		if len(st.old) == 0 {
			continue
		}
		if st.updated != nil {
			surging++
			if available(st.updated) {
				del = append(del, st.old...) // replacement is up
				surging--
			}
			continue
		}
		candidates = append(candidates, st)
	}
	if maxSurge > 0 {
		for _, st := range candidates {
			if surging >= maxSurge {
				break
			}
			create = append(create, st.node)
			surging++
		}
		return create, del
	}
	// Old pods that are not available anyway go first: it costs nothing.
	sort.SliceStable(candidates, func(i, j int) bool {
		return !available(candidates[i].old[0]) && available(candidates[j].old[0])
	})
	for _, st := range candidates {
		wasAvailable := false
		for _, p := range st.old {
			wasAvailable = wasAvailable || available(p)
		}
		if wasAvailable {
			if unavailable >= maxUnavailable {
				continue
			}
			unavailable++
		}
		del = append(del, st.old...)
	}
	return create, del
}

func orZero(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (c *Controller) writeStatus(ctx context.Context, ds *apiv1.DaemonSet, hash string, nodes map[string]*apiv1.Node, byNode map[string][]*apiv1.Pod) error {
	st := &apiv1.DaemonSetStatus{ObservedGeneration: ds.GetMetadata().GetGeneration(), Conditions: ds.GetStatus().GetConditions()}
	if ds.Status != nil {
		st.CollisionCount = ds.Status.CollisionCount
	}
	spec := ds.GetSpec().GetTemplate().GetSpec()
	now := c.Now()
	for name, pods := range byNode {
		var active []*apiv1.Pod
		for _, p := range pods {
			if ctrlkit.IsPodActive(p) {
				active = append(active, p)
			}
		}
		if len(active) == 0 {
			continue
		}
		node, ok := nodes[name]
		if !ok {
			st.NumberMisscheduled++
			continue
		}
		if _, cont := Placement(spec, node); !cont {
			st.NumberMisscheduled++
			continue
		}
		st.CurrentNumberScheduled++
		ready, avail, updated := false, false, false
		for _, p := range active {
			ready = ready || ctrlkit.IsPodReady(p)
			ok, _ := ctrlkit.IsPodAvailable(p, ds.GetSpec().GetMinReadySeconds(), now)
			avail = avail || ok
			updated = updated || p.GetMetadata().GetLabels()[RevisionLabel] == hash
		}
		if ready {
			st.NumberReady++
		}
		if avail {
			st.NumberAvailable++
		}
		if updated {
			st.UpdatedNumberScheduled++
		}
	}
	for _, n := range nodes {
		if run, _ := Placement(spec, n); run {
			st.DesiredNumberScheduled++
		} else if _, cont := Placement(spec, n); cont && len(byNode[n.GetMetadata().GetName()]) > 0 {
			st.DesiredNumberScheduled++ // tolerated to continue: still counted as desired
		}
	}
	st.NumberUnavailable = max(st.DesiredNumberScheduled-st.NumberAvailable, 0)
	if proto.Equal(st, ds.GetStatus()) {
		return nil
	}
	next := codec.Clone(ds)
	next.Status = st
	_, err := ctrlkit.UpdateStatus(ctx, c.Client(), c.sets, next)
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
