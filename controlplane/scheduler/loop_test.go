package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func testPod(name, cpu string, mut ...func(*apiv1.Pod)) *apiv1.Pod {
	p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "t"}},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox",
			Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"cpu": cpu, "memory": "64Mi"}}}}}}
	for _, m := range mut {
		m(p)
	}
	return p
}

func listPods(t *testing.T, cl *client.Client) []*apiv1.Pod {
	t.Helper()
	pods, _, err := client.List[*apiv1.Pod](context.Background(), cl, client.ListOptions{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// Pods created directly are bound, spread over the hollow nodes, and run;
// a pod that fits nowhere gets PodScheduled=False and a FailedScheduling
// Event with kube-scheduler's per-reason message, and is placed once a node
// that fits joins.
func TestSchedulerBindsSpreadsAndReportsUnschedulable(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3, Loops: []string{"scheduler"}})
	cl := c.Client(t)
	ctx := context.Background()
	for i := 0; i < 9; i++ {
		if _, err := client.Create(ctx, cl, testPod(fmt.Sprintf("p%d", i), "500m")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "9 pods bound and running", func() bool {
		running := 0
		for _, p := range listPods(t, cl) {
			if p.GetSpec().GetNodeName() != "" && p.GetStatus().GetPhase() == "Running" {
				running++
			}
		}
		return running == 9
	})
	perNode := map[string]int{}
	for _, p := range listPods(t, cl) {
		perNode[p.GetSpec().GetNodeName()]++
	}
	if len(perNode) != 3 {
		t.Fatalf("9 equal pods on 3 equal nodes should use every node (least requested), got %v", perNode)
	}
	for n, k := range perNode {
		if k < 2 || k > 4 {
			t.Fatalf("pods not spread: %v (node %s)", perNode, n)
		}
	}

	// 16 cpu fits nowhere (nodes have 4); a nodeSelector no node matches.
	if _, err := client.Create(ctx, cl, testPod("huge", "16")); err != nil {
		t.Fatal(err)
	}
	want := "0/3 nodes are available: 3 Insufficient cpu."
	testutil.WaitFor(t, 15*time.Second, "PodScheduled=False with the FitError message", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "huge")
		if err != nil {
			return false
		}
		for _, cond := range p.GetStatus().GetConditions() {
			if cond.GetType() == "PodScheduled" && cond.GetStatus() == "False" && cond.GetMessage() == want && cond.GetReason() == "Unschedulable" {
				return true
			}
		}
		return false
	})
	testutil.WaitFor(t, 10*time.Second, "FailedScheduling event", func() bool {
		evs, _, err := client.List[*apiv1.Event](ctx, cl, client.ListOptions{Namespace: "default"})
		if err != nil {
			return false
		}
		for _, e := range evs {
			if e.GetInvolvedObject().GetName() == "huge" && e.GetReason() == "FailedScheduling" && e.GetType() == "Warning" && strings.Contains(e.GetMessage(), want) {
				return true
			}
		}
		return false
	})
	// A big node joins: the pod is retried on the change and bound there.
	if _, err := c.Pool.AddNodeWithCapacity(ctx, "big", nil, map[string]string{"cpu": "32", "memory": "64Gi", "pods": "110"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "huge pod bound to the big node", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "huge")
		return err == nil && p.GetSpec().GetNodeName() == "big"
	})
}

// The leader is killed while pods are being bound. The new leader's
// scheduler rebuilds its accounting from the store (pods the old one bound
// count at once), so nodes that hold exactly 10 pods each end up with
// exactly 10 — no node overcommitted by the two leaders' work.
func TestSchedulerAcrossLeaderChange(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"scheduler"}})
	cl := c.Client(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.Pool.AddNodeWithCapacity(ctx, fmt.Sprintf("small-%d", i), nil, map[string]string{"cpu": "8", "memory": "8Gi", "pods": "10"}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 30
	for i := 0; i < n; i++ {
		if i == n/2 {
			old := c.StopLeader(t)
			t.Cleanup(func() { _ = c.StartControlNode(old) })
		}
		for attempt := 0; ; attempt++ {
			_, err := client.Create(ctx, cl, testPod(fmt.Sprintf("p%02d", i), "100m"))
			if err == nil || client.IsAlreadyExists(err) {
				break
			}
			if attempt == 20 {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "all pods bound", func() bool {
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default"})
		if err != nil || len(pods) != n {
			return false
		}
		for _, p := range pods {
			if p.GetSpec().GetNodeName() == "" {
				return false
			}
		}
		return true
	})
	perNode := map[string]int{}
	for _, p := range listPods(t, cl) {
		perNode[p.GetSpec().GetNodeName()]++
	}
	for node, k := range perNode {
		if k != 10 {
			t.Fatalf("node %s holds %d pods, capacity is 10: %v", node, k, perNode)
		}
	}
	// One more finds no room, with the exact reason.
	if _, err := client.Create(ctx, cl, testPod("extra", "100m")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "extra pod reported unschedulable", func() bool {
		p, err := client.Get[*apiv1.Pod](ctx, cl, "default", "extra")
		return err == nil && strings.Contains(p.GetStatus().String(), "0/3 nodes are available: 3 Too many pods.")
	})
}
