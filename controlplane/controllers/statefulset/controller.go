package statefulset

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Labels Kubernetes puts on StatefulSet pods.
const (
	PodNameLabel  = "statefulset.kubernetes.io/pod-name"
	RevisionLabel = "controller-revision-hash"
)

// Controller reconciles StatefulSets.
type Controller struct {
	*ctrlkit.Base
	sets   *ctrlkit.Cache
	pods   *ctrlkit.Cache
	claims *ctrlkit.Cache
	rec    *client.Recorder
}

// New returns the StatefulSet controller.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{}
	c.Base = ctrlkit.NewBase("statefulset-controller", cfg, c.sync)
	c.rec = client.NewRecorder(cfg.Client, "statefulset-controller", "")
	c.sets = c.Watch("StatefulSet", c.EnqueueHandler())
	owner := func(o client.Object) {
		md := o.GetMetadata()
		if ref := ctrlkit.ControllerOf(md); ref != nil && ref.GetKind() == "StatefulSet" {
			c.EnqueueKey(md.GetNamespace() + "/" + ref.GetName())
		}
	}
	c.pods = c.Watch("Pod", client.EventHandler{OnAdd: owner, OnDelete: owner, OnUpdate: func(_, o client.Object) { owner(o) }}).Indexed(ctrlkit.ByOwner)
	// Claims: their owner references follow the retention policy.
	c.claims = c.Watch("PersistentVolumeClaim", client.EventHandler{})
	return c
}

// NewLoop builds the controller for the registry (config: a ctrlkit.Config
// under "statefulset").
var NewLoop = ctrlkit.Factory("statefulset", New)

// Ordinal parses the ordinal of a pod of set name; -1 if it is not one.
func Ordinal(set, pod string) int {
	rest, ok := strings.CutPrefix(pod, set+"-")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return -1
	}
	return n
}

func replicas(s *apiv1.StatefulSet) int {
	if r := s.GetSpec().Replicas; r != nil {
		return int(*r)
	}
	return 1
}

func runningReady(p *apiv1.Pod) bool {
	return p.GetStatus().GetPhase() == ctrlkit.PodRunning && ctrlkit.IsPodReady(p) && !ctrlkit.IsPodTerminating(p)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := ctrlkit.SplitKey(key)
	obj, ok := c.sets.Get(ns, name)
	if !ok {
		return nil
	}
	set := obj.(*apiv1.StatefulSet)
	rev := name + "-" + deployment.TemplateHash(set.GetSpec().GetTemplate(), set.GetStatus().GetCollisionCount())
	pods := map[int]*apiv1.Pod{}
	for _, p := range ctrlkit.OwnedPods(c.pods, set.GetMetadata().GetUid(), "") {
		if ord := Ordinal(name, p.GetMetadata().GetName()); ord >= 0 {
			pods[ord] = p
		}
	}
	var err error
	if set.GetMetadata().GetDeletionTimestamp() == "" {
		err = c.manage(ctx, set, rev, pods)
	}
	return errors.Join(err, c.writeStatus(ctx, set, rev, pods))
}

func (c *Controller) manage(ctx context.Context, set *apiv1.StatefulSet, rev string, pods map[int]*apiv1.Pod) error {
	ordered := set.GetSpec().GetPodManagementPolicy() != "Parallel"
	start := int(set.GetSpec().GetOrdinals().GetStart())
	end := start + replicas(set)
	// Claim owners first: a condemned pod's claims must name it before it
	// is deleted, for whenScaled Delete.
	for ord, p := range pods {
		if err := c.claimOwners(ctx, set, p, ord, ord < start || ord >= end); err != nil {
			return err
		}
	}
	// Finished pods are replaced under the same name.
	for ord, p := range pods {
		if ph := p.GetStatus().GetPhase(); (ph == ctrlkit.PodFailed || ph == ctrlkit.PodSucceeded) && !ctrlkit.IsPodTerminating(p) {
			if err := ctrlkit.Delete(ctx, c.Client(), c.pods, p, ""); err != nil {
				return fmt.Errorf("delete finished pod %s: %w", p.GetMetadata().GetName(), err)
			}
			if ordered {
				return nil
			}
			delete(pods, ord)
		}
	}
	allReady := true
	for ord := start; ord < end; ord++ {
		p := pods[ord]
		switch {
		case p == nil:
			if ordered && !allReady {
				return nil // wait for the lower ordinals
			}
			if err := c.create(ctx, set, rev, ord); err != nil {
				return err
			}
			if ordered {
				return nil // wait for this one to be Running and Ready
			}
		case !runningReady(p):
			allReady = false
			if ordered {
				return nil
			}
		}
	}
	// Scale down: the highest ordinals first.
	var condemned []int
	for ord := range pods {
		if ord < start || ord >= end {
			condemned = append(condemned, ord)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(condemned)))
	for _, ord := range condemned {
		p := pods[ord]
		if ctrlkit.IsPodTerminating(p) {
			if ordered {
				return nil // one at a time
			}
			continue
		}
		if ordered && !allReady {
			return nil
		}
		if err := ctrlkit.Delete(ctx, c.Client(), c.pods, p, ""); err != nil {
			return fmt.Errorf("scale down %s: %w", p.GetMetadata().GetName(), err)
		}
		c.event(ctx, set, client.EventNormal, "SuccessfulDelete", "delete Pod "+p.GetMetadata().GetName()+" in StatefulSet "+set.GetMetadata().GetName()+" successful")
		if ordered {
			return nil
		}
	}
	if len(condemned) > 0 || !allReady || set.GetSpec().GetUpdateStrategy().GetType() == "OnDelete" {
		return nil
	}
	// Rolling update: one pod at a time from the highest ordinal down to
	// the partition, only while every pod is ready.
	partition := start
	if p := set.GetSpec().GetUpdateStrategy().GetRollingUpdate().Partition; p != nil {
		partition = start + int(*p)
	}
	for ord := end - 1; ord >= partition; ord-- {
		p := pods[ord]
		if p == nil || p.GetMetadata().GetLabels()[RevisionLabel] == rev {
			continue
		}
		if err := ctrlkit.Delete(ctx, c.Client(), c.pods, p, ""); err != nil {
			return fmt.Errorf("update %s: %w", p.GetMetadata().GetName(), err)
		}
		return nil
	}
	return nil
}

func (c *Controller) create(ctx context.Context, set *apiv1.StatefulSet, rev string, ord int) error {
	md := set.GetMetadata()
	name := fmt.Sprintf("%s-%d", md.GetName(), ord)
	pod := ctrlkit.PodFromTemplate(set.GetSpec().GetTemplate(), md.GetNamespace(), name, ctrlkit.ControllerRef(set, "apps/v1"))
	pod.Metadata.Labels[PodNameLabel] = name
	pod.Metadata.Labels[RevisionLabel] = rev
	pod.Spec.Hostname = name
	pod.Spec.Subdomain = set.GetSpec().GetServiceName()
	if err := c.withClaims(ctx, set, pod, ord); err != nil {
		return err
	}
	if _, err := ctrlkit.Create(ctx, c.Client(), c.pods, pod); err != nil {
		c.event(ctx, set, client.EventWarning, "FailedCreate", "create Pod "+name+" failed: "+client.Reason(err))
		return fmt.Errorf("create %s: %w", name, err)
	}
	c.event(ctx, set, client.EventNormal, "SuccessfulCreate", "create Pod "+name+" in StatefulSet "+md.GetName()+" successful")
	return nil
}

func (c *Controller) writeStatus(ctx context.Context, set *apiv1.StatefulSet, rev string, pods map[int]*apiv1.Pod) error {
	prev := set.GetStatus()
	st := &apiv1.StatefulSetStatus{ObservedGeneration: set.GetMetadata().GetGeneration(), UpdateRevision: rev,
		CurrentRevision: prev.GetCurrentRevision(), Conditions: prev.GetConditions()}
	if prev != nil {
		st.CollisionCount = prev.CollisionCount
	}
	now := c.Now()
	for _, p := range pods {
		if !ctrlkit.IsPodActive(p) {
			continue
		}
		st.Replicas++
		if ctrlkit.IsPodReady(p) {
			st.ReadyReplicas++
		}
		if ok, _ := ctrlkit.IsPodAvailable(p, set.GetSpec().GetMinReadySeconds(), now); ok {
			st.AvailableReplicas++
		}
		if p.GetMetadata().GetLabels()[RevisionLabel] == rev {
			st.UpdatedReplicas++
		}
	}
	if st.CurrentRevision == "" || (st.UpdatedReplicas == int32(replicas(set)) && st.Replicas == st.UpdatedReplicas) {
		st.CurrentRevision = rev
	}
	for _, p := range pods {
		if ctrlkit.IsPodActive(p) && p.GetMetadata().GetLabels()[RevisionLabel] == st.CurrentRevision {
			st.CurrentReplicas++
		}
	}
	if proto.Equal(st, prev) {
		return nil
	}
	next := codec.Clone(set)
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
