package disruption_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// start runs one control node with only the disruption loop and the
// cluster's real authorizer.
func start(t *testing.T) *cptest.Cluster {
	t.Helper()
	return cptest.Start(t, cptest.Options{ControlNodes: 1, HollowNodes: -1, Loops: []string{"disruption"},
		TuneAPI: func(cfg *api.Config) { cfg.Authorizer = apitest.CertGroups(node.NewAuthorizer(nil)) }})
}

// readyPods creates n pods labelled app=web and reports them Ready.
func readyPods(t *testing.T, ctx context.Context, cl *client.Client, prefix string, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		name := prefix + "-" + string(rune('a'+i))
		p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
			Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
		created, err := client.Create(ctx, cl, p)
		if err != nil {
			t.Fatal(err)
		}
		created.Status = &apiv1.PodStatus{Phase: "Running", Conditions: []*apiv1.PodCondition{{Type: "Ready", Status: "True"}}}
		if _, err := client.UpdateStatus(ctx, cl, created); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return names
}

func budget(t *testing.T, ctx context.Context, cl *client.Client, minAvailable string) {
	t.Helper()
	pdb := &apiv1.PodDisruptionBudget{Metadata: &apiv1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &apiv1.PodDisruptionBudgetSpec{MinAvailable: &minAvailable, Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	if _, err := client.Create(ctx, cl, pdb); err != nil {
		t.Fatal(err)
	}
}

func waitAllowed(t *testing.T, ctx context.Context, cl *client.Client, want int32) *apiv1.PodDisruptionBudget {
	t.Helper()
	var got *apiv1.PodDisruptionBudget
	testutil.WaitFor(t, 20*time.Second, "budget web allows the expected disruptions", func() bool {
		pdb, err := client.Get[*apiv1.PodDisruptionBudget](ctx, cl, "default", "web")
		if err != nil {
			return false
		}
		got = pdb
		st := pdb.GetStatus()
		return st.GetObservedGeneration() == pdb.GetMetadata().GetGeneration() && st.GetDisruptionsAllowed() == want
	})
	return got
}

// Three healthy pods under minAvailable 2 allow one disruption: of three
// evictions sent at once exactly one passes, the others are refused
// (ResourceExhausted, Kubernetes' 429) with the budget named.
func TestConcurrentEvictionsAgainstBudgetOfOne(t *testing.T) {
	c := start(t)
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := readyPods(t, ctx, cl, "web", 3)
	budget(t, ctx, cl, "2")
	pdb := waitAllowed(t, ctx, cl, 1)
	if st := pdb.GetStatus(); st.GetCurrentHealthy() != 3 || st.GetDesiredHealthy() != 2 || st.GetExpectedPods() != 3 {
		t.Fatalf("status %v, want currentHealthy 3 desiredHealthy 2 expectedPods 3", st)
	}

	var wg sync.WaitGroup
	errs := make([]error, len(names))
	start := make(chan struct{})
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, errs[i] = cl.Evict(ctx, "default", name, client.EvictOptions{})
		}()
	}
	close(start)
	wg.Wait()
	passed := 0
	for i, err := range errs {
		switch {
		case err == nil:
			passed++
		case client.IsTooManyRequests(err) && strings.Contains(err.Error(), "disruption budget web"):
		default:
			t.Errorf("evict %s: %v, want success or a refusal naming budget web", names[i], err)
		}
	}
	if passed != 1 {
		t.Fatalf("%d evictions passed, want exactly 1 (errors %v)", passed, errs)
	}
	left, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 {
		t.Fatalf("%d pods left, want 2", len(left))
	}
	// The budget is spent: a further eviction is refused.
	if _, _, err := cl.Evict(ctx, "default", left[0].GetMetadata().GetName(), client.EvictOptions{}); !client.IsTooManyRequests(err) {
		t.Fatalf("evict with the budget spent: %v, want refused", err)
	}
}

// Eviction is create on pods/eviction: a viewer and a node (even for a
// pod bound to it) are refused; nothing is evicted.
func TestEvictionRefusedIdentities(t *testing.T) {
	c := start(t)
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "bound", Namespace: "default"},
		Spec: &apiv1.PodSpec{NodeName: "w1", Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := client.Create(ctx, cl, p); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"user:viewer-ann", "node:w1", "node:w2"} {
		tc, err := c.API.ClientTLS(user)
		if err != nil {
			t.Fatal(err)
		}
		o := client.DefaultOptions()
		o.Servers, o.TLS = c.API.Addrs(), tc
		uc, err := client.New(o)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = uc.Evict(ctx, "default", "bound", client.EvictOptions{})
		uc.Close()
		if !client.IsForbidden(err) || !strings.Contains(err.Error(), "pods/eviction") {
			t.Errorf("%s evicts: %v, want forbidden on pods/eviction", user, err)
		}
	}
	if _, err := client.Get[*apiv1.Pod](ctx, cl, "default", "bound"); err != nil {
		t.Fatalf("pod after refused evictions: %v", err)
	}
	// The admin may.
	if _, _, err := cl.Evict(ctx, "default", "bound", client.EvictOptions{GracePeriodSeconds: client.Int64(0)}); err != nil {
		t.Fatalf("admin evicts: %v", err)
	}
}

// A percentage is taken of the pods' controller's scale: a Deployment of 4
// under maxUnavailable 50% expects 4 pods and allows 2 disruptions; after
// an eviction the ReplicaSet's replacement does not lower that base.
func TestBudgetStatusFromControllerScale(t *testing.T) {
	c := cptest.Start(t, cptest.Options{ControlNodes: 1, HollowNodes: 2})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	replicas, maxUnavailable := int32(4), "50%"
	labels := map[string]string{"app": "web"}
	d := &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: &apiv1.DeploymentSpec{Replicas: &replicas,
		Selector: &apiv1.LabelSelector{MatchLabels: labels},
		Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: labels},
			Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "nginx"}}}}}}
	if _, err := client.Create(ctx, cl, d); err != nil {
		t.Fatal(err)
	}
	pdb := &apiv1.PodDisruptionBudget{Metadata: &apiv1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &apiv1.PodDisruptionBudgetSpec{MaxUnavailable: &maxUnavailable, Selector: &apiv1.LabelSelector{MatchLabels: labels}}}
	if _, err := client.Create(ctx, cl, pdb); err != nil {
		t.Fatal(err)
	}
	got := waitAllowed(t, ctx, cl, 2)
	if st := got.GetStatus(); st.GetExpectedPods() != 4 || st.GetDesiredHealthy() != 2 || st.GetCurrentHealthy() != 4 {
		t.Fatalf("status %v, want expectedPods 4 desiredHealthy 2 currentHealthy 4", st)
	}
	var cond *apiv1.Condition
	for _, c := range got.GetStatus().GetConditions() {
		if c.GetType() == "DisruptionAllowed" {
			cond = c
		}
	}
	if cond.GetStatus() != "True" {
		t.Fatalf("DisruptionAllowed condition %v, want True", cond)
	}
	pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Evict(ctx, "default", pods[0].GetMetadata().GetName(), client.EvictOptions{}); err != nil {
		t.Fatal(err)
	}
	// The replacement comes up and the budget is whole again.
	got = waitAllowed(t, ctx, cl, 2)
	if st := got.GetStatus(); st.GetExpectedPods() != 4 || len(st.GetDisruptedPods()) != 0 {
		t.Fatalf("status after the replacement %v, want expectedPods 4 and no disrupted pods", st)
	}
}

// A pod that is not Ready may be evicted while the budget holds
// (IfHealthyBudget) even when no disruption is allowed: it is not one of
// the healthy pods the budget protects; a Ready one is refused.
func TestUnreadyPodEvictedWhileBudgetHolds(t *testing.T) {
	c := start(t)
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := readyPods(t, ctx, cl, "web", 3)
	p, err := client.Get[*apiv1.Pod](ctx, cl, "default", names[2])
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Conditions = []*apiv1.PodCondition{{Type: "Ready", Status: "False"}}
	if _, err := client.UpdateStatus(ctx, cl, p); err != nil {
		t.Fatal(err)
	}
	budget(t, ctx, cl, "2")
	pdb := waitAllowed(t, ctx, cl, 0)
	if st := pdb.GetStatus(); st.GetCurrentHealthy() != 2 || st.GetDesiredHealthy() != 2 {
		t.Fatalf("status %v, want currentHealthy 2 desiredHealthy 2", st)
	}
	if _, _, err := cl.Evict(ctx, "default", names[0], client.EvictOptions{}); !client.IsTooManyRequests(err) {
		t.Fatalf("evict a Ready pod with no disruption allowed: %v, want refused", err)
	}
	if _, _, err := cl.Evict(ctx, "default", names[2], client.EvictOptions{}); err != nil {
		t.Fatalf("evict the unready pod: %v", err)
	}
}
