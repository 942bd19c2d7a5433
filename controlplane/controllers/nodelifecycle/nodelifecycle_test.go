package nodelifecycle_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/nodelifecycle"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/hollow"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func hasTaint(n *apiv1.Node, key string) bool {
	for _, t := range n.GetSpec().GetTaints() {
		if t.GetKey() == key && t.GetEffect() == "NoExecute" {
			return true
		}
	}
	return false
}

func readyStatus(n *apiv1.Node) string {
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus()
		}
	}
	return ""
}

// A hollow node that stops heartbeating becomes Ready=Unknown with the
// unreachable NoExecute taint; its pods without a toleration are evicted
// after the default toleration, a pod tolerating the taint forever stays,
// and the taint goes once the node heartbeats again.
func TestSilentNodeIsTaintedAndItsPodsEvicted(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3, Loops: []string{"scheduler", "nodelifecycle"},
		TuneHollow: func(h *hollow.Config) { h.HeartbeatPeriod = 300 * time.Millisecond }})
	cl := c.Client(t)
	ctx := context.Background()
	victim := "hollow-1"
	mk := func(name string, tols ...*apiv1.Toleration) {
		p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: &apiv1.PodSpec{NodeName: victim, Tolerations: tols, Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := client.Create(ctx, cl, p); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		mk(fmt.Sprintf("plain-%d", i))
	}
	mk("stays", &apiv1.Toleration{Key: nodelifecycle.TaintUnreachable, Operator: "Exists", Effect: "NoExecute"})
	testutil.WaitFor(t, 10*time.Second, "pods running on "+victim, func() bool {
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default"})
		if err != nil || len(pods) != 4 {
			return false
		}
		for _, p := range pods {
			if p.GetStatus().GetPhase() != "Running" {
				return false
			}
		}
		return true
	})
	stopped := time.Now()
	c.Pool.Node(victim).Stop()
	testutil.WaitFor(t, 15*time.Second, victim+" Unknown and tainted unreachable", func() bool {
		n, err := client.Get[*apiv1.Node](ctx, cl, "", victim)
		return err == nil && readyStatus(n) == "Unknown" && hasTaint(n, nodelifecycle.TaintUnreachable)
	})
	testutil.WaitFor(t, 15*time.Second, "untolerating pods evicted", func() bool {
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default"})
		return err == nil && len(pods) == 1 && pods[0].GetMetadata().GetName() == "stays"
	})
	t.Logf("pods evicted %.1fs after the node went silent", time.Since(stopped).Seconds())
	// Other nodes were left alone.
	for _, name := range []string{"hollow-0", "hollow-2"} {
		n, err := client.Get[*apiv1.Node](ctx, cl, "", name)
		if err != nil || readyStatus(n) != "True" || len(n.GetSpec().GetTaints()) != 0 {
			t.Fatalf("healthy node %s changed: %v %v", name, err, n)
		}
	}
	c.Pool.Node(victim).Resume()
	testutil.WaitFor(t, 10*time.Second, victim+" Ready again without taint", func() bool {
		n, err := client.Get[*apiv1.Node](ctx, cl, "", victim)
		return err == nil && readyStatus(n) == "True" && len(n.GetSpec().GetTaints()) == 0
	})
}
