package disruption

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// DisruptedPodTimeout: a pod listed as disrupted that is still there,
// not being deleted, after this long counts again (its eviction's delete
// never happened), as in Kubernetes.
const DisruptedPodTimeout = 2 * time.Minute

// ConditionDisruptionAllowed is the status condition's type.
const ConditionDisruptionAllowed = "DisruptionAllowed"

// Controller keeps PodDisruptionBudget status.
type Controller struct {
	*ctrlkit.Base
	budgets, pods *ctrlkit.Cache
	reg           *kinds.Registry
}

// NewLoop is the registry factory ("disruption").
var NewLoop = ctrlkit.Factory("disruption", New)

// New returns the controller.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{reg: kinds.NewRegistry()}
	c.Base = ctrlkit.NewBase("disruption", cfg, c.sync)
	c.budgets = c.Watch("PodDisruptionBudget", c.EnqueueHandler())
	c.pods = c.Watch("Pod", client.EventHandler{
		OnAdd:    func(o client.Object) { c.podChanged(o) },
		OnUpdate: func(_, o client.Object) { c.podChanged(o) },
		OnDelete: func(o client.Object) { c.podChanged(o) },
	})
	return c
}

// podChanged queues every budget of the pod's namespace that selects it.
func (c *Controller) podChanged(o client.Object) {
	p := o.(*apiv1.Pod)
	for _, b := range c.budgets.List() {
		pdb := b.(*apiv1.PodDisruptionBudget)
		if pdb.GetMetadata().GetNamespace() != p.GetMetadata().GetNamespace() {
			continue
		}
		if sel := pdb.GetSpec().GetSelector(); sel != nil && kinds.SelectorMatches(sel, p.GetMetadata().GetLabels()) {
			c.Enqueue(pdb)
		}
	}
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := ctrlkit.SplitKey(key)
	obj, ok := c.budgets.Get(ns, name)
	if !ok {
		return nil
	}
	pdb := obj.(*apiv1.PodDisruptionBudget)
	now := c.Now()
	var selected []*apiv1.Pod
	if sel := pdb.GetSpec().GetSelector(); sel != nil {
		for _, p := range ctrlkit.Pods(c.pods, ns) {
			if kinds.SelectorMatches(sel, p.GetMetadata().GetLabels()) {
				selected = append(selected, p)
			}
		}
	}
	st, err := c.status(ctx, pdb, selected, now)
	if err != nil {
		return err
	}
	if proto.Equal(st, pdb.GetStatus()) {
		return nil
	}
	next := codec.Clone(pdb)
	next.Status = st
	_, err = ctrlkit.UpdateStatus(ctx, c.Client(), c.budgets, next)
	if client.IsNotFound(err) || client.IsConflict(err) {
		// Gone, or changed (an eviction spent a disruption): the watch
		// brings the new version and queues it again.
		return nil
	}
	return err
}

// status computes the budget's status from the pods it selects.
func (c *Controller) status(ctx context.Context, pdb *apiv1.PodDisruptionBudget, selected []*apiv1.Pod, now time.Time) (*apiv1.PodDisruptionBudgetStatus, error) {
	old := pdb.GetStatus()
	st := &apiv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.GetMetadata().GetGeneration()}
	live := map[string]*apiv1.Pod{}
	var active []*apiv1.Pod
	for _, p := range selected {
		live[p.GetMetadata().GetName()] = p
		if ph := p.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
			continue
		}
		active = append(active, p)
	}
	// disruptedPods: keep entries whose pod is still there, not yet
	// being deleted, and recent.
	for podName, ts := range old.GetDisruptedPods() {
		p, ok := live[podName]
		if !ok || p.GetMetadata().GetDeletionTimestamp() != "" {
			continue
		}
		if t, err := time.Parse(time.RFC3339, ts); err == nil && now.Sub(t) > DisruptedPodTimeout {
			continue
		}
		if st.DisruptedPods == nil {
			st.DisruptedPods = map[string]string{}
		}
		st.DisruptedPods[podName] = ts
	}
	for _, p := range active {
		_, disrupted := st.DisruptedPods[p.GetMetadata().GetName()]
		if !disrupted && p.GetMetadata().GetDeletionTimestamp() == "" && ctrlkit.IsPodReady(p) {
			st.CurrentHealthy++
		}
	}
	expected, err := c.expectedPods(ctx, pdb, active)
	if err != nil {
		return nil, err
	}
	st.ExpectedPods = expected
	desired, err := desiredHealthy(pdb.GetSpec(), int(expected))
	if err != nil {
		return nil, err
	}
	st.DesiredHealthy = int32(desired)
	if allowed := st.CurrentHealthy - st.DesiredHealthy; allowed > 0 && expected > 0 {
		st.DisruptionsAllowed = allowed
	}
	cond := &apiv1.Condition{Type: ConditionDisruptionAllowed, Status: "False", Reason: "InsufficientPods",
		Message: fmt.Sprintf("%d healthy of %d needed", st.CurrentHealthy, st.DesiredHealthy), ObservedGeneration: st.ObservedGeneration}
	if st.DisruptionsAllowed > 0 {
		cond.Status, cond.Reason, cond.Message = "True", "SufficientPods", ""
	}
	cond.LastTransitionTime = now.UTC().Format(time.RFC3339)
	for _, oc := range old.GetConditions() {
		if oc.GetType() == cond.Type && oc.GetStatus() == cond.Status {
			cond.LastTransitionTime = oc.GetLastTransitionTime()
		}
	}
	st.Conditions = []*apiv1.Condition{cond}
	return st, nil
}

// desiredHealthy is how many pods must stay healthy.
func desiredHealthy(s *apiv1.PodDisruptionBudgetSpec, expected int) (int, error) {
	switch {
	case s.MinAvailable != nil:
		return kinds.IntOrPercent(s.GetMinAvailable(), expected, true)
	case s.MaxUnavailable != nil:
		unavailable, err := kinds.IntOrPercent(s.GetMaxUnavailable(), expected, true)
		if err != nil {
			return 0, err
		}
		return max(0, expected-unavailable), nil
	}
	// Neither set: Kubernetes' default is minAvailable 1.
	return 1, nil
}

// expectedPods is how many pods the budget should see: for a count in
// minAvailable, the pods there are; otherwise the scale of the pods'
// controllers (a pod being replaced must not lower the base a percentage
// or maxUnavailable is taken of), or the pods when one has no scalable
// controller.
func (c *Controller) expectedPods(ctx context.Context, pdb *apiv1.PodDisruptionBudget, active []*apiv1.Pod) (int32, error) {
	s := pdb.GetSpec()
	if s.MinAvailable != nil && !strings.HasSuffix(s.GetMinAvailable(), "%") {
		return int32(len(active)), nil
	}
	if s.MinAvailable == nil && s.MaxUnavailable == nil {
		return int32(len(active)), nil
	}
	seen := map[string]bool{}
	var total int32
	for _, p := range active {
		ref := ctrlkit.ControllerOf(p.GetMetadata())
		if ref == nil {
			return int32(len(active)), nil
		}
		if seen[ref.GetUid()] {
			continue
		}
		seen[ref.GetUid()] = true
		k, ok := c.reg.ForKind(ref.GetKind())
		if !ok || !k.Scalable() {
			return int32(len(active)), nil
		}
		env, err := c.Client().API().Get(ctx, &apiv1.GetRequest{Kind: ref.GetKind(), Namespace: p.GetMetadata().GetNamespace(), Name: ref.GetName(), Stale: true})
		if client.IsNotFound(err) {
			return int32(len(active)), nil
		}
		if err != nil {
			return 0, fmt.Errorf("scale of %s %s: %w", ref.GetKind(), ref.GetName(), err)
		}
		owner, _, err := c.reg.Unpack(env)
		if err != nil {
			return 0, err
		}
		if r := k.Replicas(owner); r != nil {
			total += *r
		}
	}
	return total, nil
}
