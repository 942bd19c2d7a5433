package scheduler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func priorityClass(name string, value int32, policy string) *apiv1.PriorityClass {
	pc := &apiv1.PriorityClass{ApiVersion: "scheduling.k8s.io/v1", Kind: "PriorityClass",
		Metadata: &apiv1.ObjectMeta{Name: name}, Value: value}
	if policy != "" {
		pc.PreemptionPolicy = &policy
	}
	return pc
}

func withClass(class string) func(*apiv1.Pod) {
	return func(p *apiv1.Pod) { p.Spec.PriorityClassName = class }
}

func onNode(node string) func(*apiv1.Pod) {
	return func(p *apiv1.Pod) { p.Spec.NodeName = node }
}

// TestPreemptionEvictsFewestVictims: on a full cluster of hollow nodes, a
// high-priority pod that fits nowhere evicts lower-priority pods on the
// node where the fewest must go (one of n1's two 2-cpu pods, not two of
// n0's 1-cpu pods; n2's pod has the same priority and is never a victim),
// then binds there. A pod whose class says Never waits instead, and the
// admission resolved every pod's priority from its class.
func TestPreemptionEvictsFewestVictims(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"scheduler"}})
	cl := c.Client(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.Pool.AddNodeWithCapacity(ctx, fmt.Sprintf("n%d", i), nil,
			map[string]string{"cpu": "4", "memory": "8Gi", "pods": "110"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pc := range []*apiv1.PriorityClass{priorityClass("low", 100, ""), priorityClass("high", 1000, ""),
		priorityClass("high-polite", 1000, "Never")} {
		if _, err := client.Create(ctx, cl, pc); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		if _, err := client.Create(ctx, cl, testPod(fmt.Sprintf("small%d", i), "1", withClass("low"), onNode("n0"))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("big%d", i)
		if _, err := client.Create(ctx, cl, testPod(name, "2", withClass("low"), onNode("n1"))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Create(ctx, cl, testPod("peer", "4", withClass("high"), onNode("n2"))); err != nil {
		t.Fatal(err)
	}
	// Admission resolved the classes.
	got, err := client.Get[*apiv1.Pod](ctx, cl, "default", "small0")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSpec().GetPriority() != 100 || got.GetSpec().GetPreemptionPolicy() != "PreemptLowerPriority" {
		t.Fatalf("admission: priority %d policy %q, want 100 PreemptLowerPriority", got.GetSpec().GetPriority(), got.GetSpec().GetPreemptionPolicy())
	}
	if _, err := client.Create(ctx, cl, testPod("nope", "1", withClass("missing"))); err == nil {
		t.Fatal("a pod naming a missing PriorityClass was admitted")
	}
	// A polite pod (Never) does not preempt: it stays pending.
	if _, err := client.Create(ctx, cl, testPod("polite", "2", withClass("high-polite"))); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the polite pod reported unschedulable", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "polite")
		return err == nil && podScheduledFalse(p)
	})
	if n := len(listPods(t, cl)); n != 8 {
		t.Fatalf("%d pods after the polite pod, want 8 (nothing evicted)", n)
	}
	if _, _, err := cl.Delete(ctx, "Pod", "default", "polite", client.DeleteOptions{GracePeriodSeconds: client.Int64(0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, cl, testPod("urgent", "2", withClass("high"))); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the urgent pod bound after preemption", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "urgent")
		return err == nil && p.GetSpec().GetNodeName() != ""
	})
	urgent, _ := client.Get[*apiv1.Pod](ctx, cl, "default", "urgent")
	if urgent.GetSpec().GetNodeName() != "n1" {
		t.Fatalf("urgent pod bound to %s, want n1 (one victim there, two on n0)", urgent.GetSpec().GetNodeName())
	}
	left := map[string]bool{}
	for _, p := range listPods(t, cl) {
		if p.GetMetadata().GetDeletionTimestamp() == "" {
			left[p.GetMetadata().GetName()] = true
		}
	}
	gone := 0
	for _, name := range []string{"small0", "small1", "small2", "small3", "big0", "big1", "peer"} {
		if !left[name] {
			gone++
			if name != "big0" && name != "big1" {
				t.Errorf("pod %s was evicted; only one of n1's pods should be", name)
			}
		}
	}
	if gone != 1 {
		t.Errorf("%d pods evicted, want exactly 1 (fewest victims): left %v", gone, left)
	}
}

func podScheduledFalse(p *apiv1.Pod) bool {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "PodScheduled" && c.GetStatus() == "False" {
			return true
		}
	}
	return false
}

// TestHigherPriorityPlacedFirst: with room for one pod, a low and then a
// high priority pod wait for a node; when it comes the high one is placed
// first, so the low one waits (it was never placed, hence never preempted:
// had it been placed first, the high one would have evicted it).
func TestHigherPriorityPlacedFirst(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"scheduler"}})
	cl := c.Client(t)
	ctx := context.Background()
	for _, pc := range []*apiv1.PriorityClass{priorityClass("low", 100, ""), priorityClass("high", 1000, "")} {
		if _, err := client.Create(ctx, cl, pc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Create(ctx, cl, testPod("first-low", "3", withClass("low"))); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, cl, testPod("then-high", "3", withClass("high"))); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "both pods reported unschedulable", func() bool {
		for _, name := range []string{"first-low", "then-high"} {
			p, err := client.Get[*apiv1.Pod](ctx, cl, "default", name)
			if err != nil || !podScheduledFalse(p) {
				return false
			}
		}
		return true
	})
	if _, err := c.Pool.AddNodeWithCapacity(ctx, "only", nil, map[string]string{"cpu": "4", "memory": "8Gi", "pods": "110"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the high-priority pod bound", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "then-high")
		return err == nil && p.GetSpec().GetNodeName() == "only"
	})
	low, err := client.Get[*apiv1.Pod](ctx, cl, "default", "first-low")
	if err != nil {
		t.Fatalf("the low-priority pod is gone (%v): it was placed first and then preempted", err)
	}
	if low.GetSpec().GetNodeName() != "" || low.GetMetadata().GetDeletionTimestamp() != "" {
		t.Fatalf("low-priority pod on %q (deleting: %q), want still pending", low.GetSpec().GetNodeName(), low.GetMetadata().GetDeletionTimestamp())
	}
}

// TestGlobalDefaultPriorityClass: a pod naming no class gets the
// globalDefault one's priority; a second globalDefault class is refused.
func TestGlobalDefaultPriorityClass(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{}})
	cl := c.Client(t)
	ctx := context.Background()
	everyone := priorityClass("everyone", 7, "")
	everyone.GlobalDefault = true
	if _, err := client.Create(ctx, cl, everyone); err != nil {
		t.Fatal(err)
	}
	second := priorityClass("also-default", 8, "")
	second.GlobalDefault = true
	if _, err := client.Create(ctx, cl, second); err == nil {
		t.Fatal("a second globalDefault PriorityClass was accepted")
	}
	p, err := client.Create(ctx, cl, testPod("plain", "100m"))
	if err != nil {
		t.Fatal(err)
	}
	if p.GetSpec().GetPriority() != 7 || p.GetSpec().GetPriorityClassName() != "everyone" {
		t.Fatalf("pod without a class: priority %d class %q, want 7 everyone", p.GetSpec().GetPriority(), p.GetSpec().GetPriorityClassName())
	}
	withPriority := testPod("explicit", "100m", func(p *apiv1.Pod) { v := int32(99); p.Spec.Priority = &v })
	if _, err := client.Create(ctx, cl, withPriority); err == nil {
		t.Fatal("a pod setting a priority its class does not give was accepted")
	}
}

// TestPreemptorNominatedWhileVictimsTerminate: while its victim is still
// terminating (its hollow node does not confirm the deletion), the
// preemptor waits with status.nominatedNodeName naming the node and evicts
// nothing more; once the victim is gone it binds there.
func TestPreemptorNominatedWhileVictimsTerminate(t *testing.T) {
	cfg := scheduler.DefaultConfig()
	cfg.RetryPeriod = 100 * time.Millisecond // unschedulable pods are retried often
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"scheduler"}, Configs: map[string]any{"scheduler": cfg}})
	cl := c.Client(t)
	ctx := context.Background()
	node, err := c.Pool.AddNodeWithCapacity(ctx, "n0", nil, map[string]string{"cpu": "4", "memory": "8Gi", "pods": "110"})
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range []*apiv1.PriorityClass{priorityClass("low", 100, ""), priorityClass("high", 1000, "")} {
		if _, err := client.Create(ctx, cl, pc); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"victim", "bystander"} {
		if _, err := client.Create(ctx, cl, testPod(name, "2", withClass("low"), onNode("n0"))); err != nil {
			t.Fatal(err)
		}
	}
	node.Stop() // deletions on n0 are not confirmed until Resume
	if _, err := client.Create(ctx, cl, testPod("urgent", "2", withClass("high"))); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "urgent nominated to n0 while its victim terminates", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "urgent")
		return err == nil && p.GetStatus().GetNominatedNodeName() == "n0" && p.GetSpec().GetNodeName() == ""
	})
	// Several more attempts (each a FailedScheduling event) evict nothing
	// more while the victim is still there.
	testutil.WaitFor(t, 20*time.Second, "5 more placement attempts for urgent", func() bool {
		evs, _, err := client.List[*apiv1.Event](ctx, cl, client.ListOptions{Namespace: "default"})
		if err != nil {
			return false
		}
		for _, e := range evs {
			if e.GetInvolvedObject().GetName() == "urgent" && e.GetReason() == "FailedScheduling" && e.GetCount() >= 5 {
				return true
			}
		}
		return false
	})
	terminating := 0
	for _, p := range listPods(t, cl) {
		if p.GetMetadata().GetDeletionTimestamp() != "" {
			terminating++
		}
	}
	if terminating != 1 {
		t.Fatalf("%d pods terminating, want 1 (one victim is enough; none more while it goes)", terminating)
	}
	node.Resume()
	testutil.WaitFor(t, 20*time.Second, "urgent bound to n0 once the victim is gone", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "urgent")
		return err == nil && p.GetSpec().GetNodeName() == "n0"
	})
}

// TestPreemptionSparesDisruptionBudgets: the layout of
// TestPreemptionEvictsFewestVictims, with a PodDisruptionBudget
// (minAvailable 2, kept by the real disruption controller) over n1's two
// 2-cpu pods: the urgent pod now evicts two of n0's 1-cpu pods, whose
// eviction breaks no budget, instead of one guarded pod on n1.
func TestPreemptionSparesDisruptionBudgets(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"scheduler", "disruption"}})
	cl := c.Client(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := c.Pool.AddNodeWithCapacity(ctx, fmt.Sprintf("n%d", i), nil,
			map[string]string{"cpu": "4", "memory": "8Gi", "pods": "110"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pc := range []*apiv1.PriorityClass{priorityClass("low", 100, ""), priorityClass("high", 1000, "")} {
		if _, err := client.Create(ctx, cl, pc); err != nil {
			t.Fatal(err)
		}
	}
	app := func(name string) func(*apiv1.Pod) {
		return func(p *apiv1.Pod) { p.Metadata.Labels = map[string]string{"app": name} }
	}
	for i := 0; i < 4; i++ {
		if _, err := client.Create(ctx, cl, testPod(fmt.Sprintf("small%d", i), "1", withClass("low"), onNode("n0"), app("small"))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := client.Create(ctx, cl, testPod(fmt.Sprintf("big%d", i), "2", withClass("low"), onNode("n1"), app("big"))); err != nil {
			t.Fatal(err)
		}
	}
	two := "2"
	pdb := &apiv1.PodDisruptionBudget{ApiVersion: "policy/v1", Kind: "PodDisruptionBudget", Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "big"},
		Spec: &apiv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "big"}}}}
	if _, err := client.Create(ctx, cl, pdb); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "budget big observed with no disruption allowed", func() bool {
		b, err := client.Get[*apiv1.PodDisruptionBudget](ctx, cl, "default", "big")
		return err == nil && b.GetStatus().GetObservedGeneration() >= 1 && b.GetStatus().GetExpectedPods() == 2 && b.GetStatus().GetDisruptionsAllowed() == 0
	})
	if _, err := client.Create(ctx, cl, testPod("urgent", "2", withClass("high"))); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the urgent pod bound after preemption", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "urgent")
		return err == nil && p.GetSpec().GetNodeName() != ""
	})
	urgent, _ := client.Get[*apiv1.Pod](ctx, cl, "default", "urgent")
	if urgent.GetSpec().GetNodeName() != "n0" {
		t.Fatalf("urgent pod bound to %s, want n0 (n1's victim would break budget big)", urgent.GetSpec().GetNodeName())
	}
	for _, p := range listPods(t, cl) {
		if name := p.GetMetadata().GetName(); (name == "big0" || name == "big1") && p.GetMetadata().GetDeletionTimestamp() != "" {
			t.Errorf("guarded pod %s was evicted", name)
		}
	}
}
