package nodelifecycle_test

import (
	"context"
	"fmt"
	"maps"
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

// A Deployment's pods on a node that dies are replaced on the other nodes
// (default node-lifecycle timings, hollow heartbeats every second). The
// time from the node's last heartbeat to all replicas ready elsewhere is
// logged; the goal is under 10 s (Kubernetes: about 5 minutes).
func TestDeadNodesDeploymentPodsReplacedElsewhere(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3,
		Loops: []string{"scheduler", "nodelifecycle", "deployment", "replicaset"}})
	cl := c.Client(t)
	ctx := context.Background()
	l := map[string]string{"app": "web"}
	d := &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &apiv1.DeploymentSpec{Replicas: ptr(int32(6)), Selector: &apiv1.LabelSelector{MatchLabels: l},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: l},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "web", Image: "nginx"}}}}}}
	if _, err := client.Create(ctx, cl, d); err != nil {
		t.Fatal(err)
	}
	// readyOn counts ready pods per node, ignoring pods being deleted.
	readyOn := func() (map[string]int, int) {
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "app=web"})
		if err != nil {
			return nil, 0
		}
		per, total := map[string]int{}, 0
		for _, p := range pods {
			if p.GetMetadata().GetDeletionTimestamp() != "" || p.GetStatus().GetPhase() != "Running" {
				continue
			}
			per[p.GetSpec().GetNodeName()]++
			total++
		}
		return per, total
	}
	victim := ""
	testutil.WaitFor(t, 30*time.Second, "6 ready pods spread over the 3 nodes", func() bool {
		per, total := readyOn()
		if total != 6 || len(per) != 3 {
			return false
		}
		for n := range per {
			victim = n
		}
		return true
	})
	stopped := time.Now()
	c.Pool.Node(victim).Stop()
	testutil.WaitFor(t, 30*time.Second, "6 ready pods, none on the dead node "+victim, func() bool {
		per, total := readyOn()
		return total == 6 && per[victim] == 0
	})
	t.Logf("all 6 replicas ready on the other nodes %.1fs after %s stopped heartbeating (goal < 10 s)", time.Since(stopped).Seconds(), victim)
}

func ptr[T any](v T) *T { return &v }

// Lease renewals alone keep nodes Ready: hollow nodes renew their
// kube-node-lease Lease every 200 ms and never rewrite their status within
// the test, while the grace period is 1 s. A node that stops renewing goes
// Unknown; resumed, it rewrites its status at once (its pool watches the
// Nodes) and is Ready again.
func TestLeaseRenewalsAreHeartbeats(t *testing.T) {
	grace := time.Second
	c := cptest.Start(t, cptest.Options{HollowNodes: 3, Loops: []string{"nodelifecycle"},
		Configs: map[string]any{"nodelifecycle": nodelifecycle.Config{GracePeriod: grace, MonitorPeriod: 50 * time.Millisecond, DefaultTolerationSeconds: 2}},
		TuneHollow: func(h *hollow.Config) {
			h.HeartbeatPeriod, h.StatusReportPeriod = 200*time.Millisecond, time.Hour
		}})
	cl := c.Client(t)
	ctx := context.Background()
	heartbeatTimes := func() map[string]string {
		nodes, _, err := client.List[*apiv1.Node](ctx, cl, client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, n := range nodes {
			for _, cond := range n.GetStatus().GetConditions() {
				if cond.GetType() == "Ready" {
					out[n.GetMetadata().GetName()] = cond.GetStatus() + " " + cond.GetLastHeartbeatTime()
				}
			}
		}
		return out
	}
	leaseRenewals := func(name string) string {
		l, err := client.Get[*apiv1.Lease](ctx, cl, apiv1.NodeLeaseNamespace, name)
		if err != nil {
			return ""
		}
		return l.GetSpec().GetRenewTime()
	}
	before := heartbeatTimes()
	if len(before) != 3 {
		t.Fatalf("want 3 nodes with a Ready condition, got %v", before)
	}
	firstRenewal := leaseRenewals("hollow-0")
	// Four grace periods: each node must stay Ready with its status untouched.
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for window := time.Now().Add(4 * grace); time.Now().Before(window); <-poll.C {
		if now := heartbeatTimes(); !maps.Equal(now, before) {
			t.Fatalf("node status changed while only leases were renewed:\nbefore %v\nnow    %v", before, now)
		}
	}
	if r := leaseRenewals("hollow-0"); r == "" || r == firstRenewal {
		t.Fatalf("hollow-0's lease was not renewed: %q then %q", firstRenewal, r)
	}
	l, err := client.Get[*apiv1.Lease](ctx, cl, apiv1.NodeLeaseNamespace, "hollow-0")
	if err != nil {
		t.Fatal(err)
	}
	if l.GetSpec().GetHolderIdentity() != "hollow-0" || len(l.GetMetadata().GetOwnerReferences()) != 1 ||
		l.GetMetadata().GetOwnerReferences()[0].GetKind() != "Node" {
		t.Fatalf("lease holder/owner: %v %v", l.GetSpec(), l.GetMetadata().GetOwnerReferences())
	}

	c.Pool.Node("hollow-1").Stop()
	testutil.WaitFor(t, 10*time.Second, "hollow-1 Unknown", func() bool {
		n, err := client.Get[*apiv1.Node](ctx, cl, "", "hollow-1")
		return err == nil && readyStatus(n) == "Unknown"
	})
	for _, name := range []string{"hollow-0", "hollow-2"} {
		if n, err := client.Get[*apiv1.Node](ctx, cl, "", name); err != nil || readyStatus(n) != "True" {
			t.Fatalf("renewing node %s is not Ready: %v %v", name, err, n.GetStatus())
		}
	}
	c.Pool.Node("hollow-1").Resume()
	testutil.WaitFor(t, 10*time.Second, "hollow-1 Ready again", func() bool {
		n, err := client.Get[*apiv1.Node](ctx, cl, "", "hollow-1")
		return err == nil && readyStatus(n) == "True" && len(n.GetSpec().GetTaints()) == 0
	})
}
