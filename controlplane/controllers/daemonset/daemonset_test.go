package daemonset_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/controlplane/controllers/daemonset"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func TestPlacementSelectorsAndTaints(t *testing.T) {
	node := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "n1", Labels: map[string]string{"disk": "ssd"}},
		Spec: &apiv1.NodeSpec{Taints: []*apiv1.Taint{{Key: "gpu", Effect: "NoSchedule"}}}}
	cases := []struct {
		name           string
		spec           *apiv1.PodSpec
		run, continue_ bool
	}{
		{"selector matches, taint not tolerated: keep but do not start", &apiv1.PodSpec{NodeSelector: map[string]string{"disk": "ssd"}}, false, true},
		{"selector does not match", &apiv1.PodSpec{NodeSelector: map[string]string{"disk": "hdd"}}, false, false},
		{"tolerated by key", &apiv1.PodSpec{Tolerations: []*apiv1.Toleration{{Key: "gpu", Operator: "Exists"}}}, true, true},
		{"tolerate everything", &apiv1.PodSpec{Tolerations: []*apiv1.Toleration{{Operator: "Exists"}}}, true, true},
		{"affinity NotIn", &apiv1.PodSpec{Tolerations: []*apiv1.Toleration{{Operator: "Exists"}}, Affinity: &apiv1.Affinity{NodeAffinity: &apiv1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &apiv1.NodeSelector{NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{
				MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: "disk", Operator: "NotIn", Values: []string{"ssd"}}}}}}}}}, false, false},
	}
	for _, tc := range cases {
		run, cont := daemonset.Placement(tc.spec, node)
		if run != tc.run || cont != tc.continue_ {
			t.Errorf("%s: run=%v continue=%v, want %v %v", tc.name, run, cont, tc.run, tc.continue_)
		}
	}
	node.Spec.Taints[0].Effect = "NoExecute"
	if run, cont := daemonset.Placement(&apiv1.PodSpec{}, node); run || cont {
		t.Error("an untolerated NoExecute taint must evict the daemon pod")
	}
}

func dsPods(t *testing.T, cl *client.Client) map[string][]*apiv1.Pod {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "app=agent"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*apiv1.Pod{}
	for _, p := range pods {
		if p.GetMetadata().GetDeletionTimestamp() == "" {
			out[p.GetSpec().GetNodeName()] = append(out[p.GetSpec().GetNodeName()], p)
		}
	}
	return out
}

func onePerNode(t *testing.T, cl *client.Client, nodes int, image string) func() bool {
	return func() bool {
		by := dsPods(t, cl)
		if len(by) != nodes {
			return false
		}
		for _, ps := range by {
			if len(ps) != 1 || ps[0].GetStatus().GetPhase() != "Running" || (image != "" && ps[0].GetSpec().GetContainers()[0].GetImage() != image) {
				return false
			}
		}
		return true
	}
}

// TestDaemonSetOnHollowNodes: one pod per hollow node with nodeName set; a
// new node gets one; a NoExecute taint removes it; a rolling update
// replaces every pod with at most one node without a ready pod at any
// event.
func TestDaemonSetOnHollowNodes(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := map[string]string{"app": "agent"}
	ds := &apiv1.DaemonSet{Metadata: &apiv1.ObjectMeta{Name: "agent", Namespace: "default"},
		Spec: &apiv1.DaemonSetSpec{Selector: &apiv1.LabelSelector{MatchLabels: l},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: l},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "agent", Image: "agent:1"}}}}}}
	if _, err := client.Create(ctx, cl, ds); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "one running pod on each of 3 nodes", onePerNode(t, cl, 3, ""))
	if _, err := c.Pool.AddNode(ctx, "hollow-extra", nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "a pod on the new node too", onePerNode(t, cl, 4, ""))
	var st *apiv1.DaemonSetStatus
	if !testutil.Eventually(10*time.Second, func() bool {
		cur, err := client.Get[*apiv1.DaemonSet](ctx, cl, "default", "agent")
		st = cur.GetStatus()
		return err == nil && st.GetDesiredNumberScheduled() == 4 && st.GetNumberReady() == 4 && st.GetUpdatedNumberScheduled() == 4 &&
			st.GetNumberAvailable() == 4 && st.GetNumberUnavailable() == 0
	}) {
		t.Fatalf("status should count 4 nodes: %v", st)
	}
	if _, err := client.Patch[*apiv1.Node](ctx, cl, "", "hollow-extra", []byte(`{"spec":{"taints":[{"key":"maint","effect":"NoExecute"}]}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "tainted node's pod gone", onePerNode(t, cl, 3, ""))

	var mu sync.Mutex
	minReady, armed := 100, false
	ctrltest.WatchPods(t, cl, "default", "app=agent", func(pods map[string]*apiv1.Pod) {
		mu.Lock()
		defer mu.Unlock()
		if !armed {
			return
		}
		readyNodes := map[string]bool{}
		for _, p := range pods {
			if _, ready := ctrltest.Counts(map[string]*apiv1.Pod{"": p}); ready == 1 {
				readyNodes[p.GetSpec().GetNodeName()] = true
			}
		}
		minReady = min(minReady, len(readyNodes))
	})
	mu.Lock()
	armed = true
	mu.Unlock()
	if _, err := client.Patch[*apiv1.DaemonSet](ctx, cl, "default", "agent",
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"agent","image":"agent:2"}]}}}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "every node runs agent:2", onePerNode(t, cl, 3, "agent:2"))
	mu.Lock()
	defer mu.Unlock()
	if minReady < 2 {
		t.Fatalf("rolling update left only %d of 3 nodes with a ready pod (maxUnavailable 1)", minReady)
	}
}
