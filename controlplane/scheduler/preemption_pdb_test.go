package scheduler

import (
	"slices"
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func prio(v int32, labels map[string]string) func(*apiv1.Pod) {
	return func(p *apiv1.Pod) { p.Spec.Priority = &v; p.Metadata.Labels = labels }
}

func budget(app string, allowed int32, disrupted ...string) *apiv1.PodDisruptionBudget {
	b := &apiv1.PodDisruptionBudget{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: app},
		Spec:   &apiv1.PodDisruptionBudgetSpec{Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
		Status: &apiv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed, DisruptedPods: map[string]string{}}}
	for _, d := range disrupted {
		b.Status.DisruptedPods[d] = "2026-01-01T00:00:00Z"
	}
	return b
}

// place puts pods on nodes (by name).
func place(t *testing.T, nodes []*NodeInfo, on map[string][]*apiv1.Pod) {
	for _, n := range nodes {
		for _, p := range on[n.Name()] {
			p.Spec.NodeName = n.Name()
			n.AddPod(pinfo(t, p))
		}
	}
}

func victimNames(pr *Preemption) []string {
	var out []string
	for _, v := range pr.Victims {
		out = append(out, v.Pod.GetMetadata().GetName())
	}
	slices.Sort(out)
	return out
}

// Preemption respects PodDisruptionBudgets as kube-scheduler's
// DefaultPreemption does: candidates with fewer budget-breaking victims
// win over candidates with lower-priority or fewer victims; within a node
// the budget-breaking pods are reprieved first; a pod already listed in a
// budget's disruptedPods does not count again; and when every candidate
// breaks a budget the preemption still happens, on the fewest violations.
func TestPreemptionRespectsDisruptionBudgets(t *testing.T) {
	high := pod("urgent", "2", "64Mi", prio(1000, nil))
	run := func(pdbs []*apiv1.PodDisruptionBudget, on map[string][]*apiv1.Pod) *Preemption {
		t.Helper()
		nodes := infos(t, node("n0", "4", "8Gi"), node("n1", "4", "8Gi"))
		place(t, nodes, on)
		a := NewAlgorithm(1)
		pi := pinfo(t, high)
		if _, err := a.Place(pi, nodes); err == nil {
			t.Fatal("the preemptor fits without preemption")
		}
		pr := a.Preempt(pi, nodes, pdbs)
		if pr == nil {
			t.Fatal("no preemption")
		}
		return pr
	}
	// n0: one 4-cpu pod of app db (priority 100); n1: two 2-cpu pods of
	// app web (priority 100 and 200).
	layout := func() map[string][]*apiv1.Pod {
		return map[string][]*apiv1.Pod{
			"n0": {pod("db-0", "4", "64Mi", prio(100, map[string]string{"app": "db"}))},
			"n1": {pod("web-0", "2", "64Mi", prio(100, map[string]string{"app": "web"})),
				pod("web-1", "2", "64Mi", prio(200, map[string]string{"app": "web"}))},
		}
	}
	// No budgets: the highest victim priority decides (n0: 100; n1's
	// lowest single victim is also 100, tie; then the sum, tie; then the
	// fewest victims: one each), and the node order keeps n0.
	if pr := run(nil, layout()); pr.Node.Name() != "n0" || pr.Violations != 0 {
		t.Fatalf("no budgets: %s %v (%d violations), want n0 [db-0]", pr.Node.Name(), victimNames(pr), pr.Violations)
	}
	// db allows no disruption: n1, whose victim breaks no budget.
	pr := run([]*apiv1.PodDisruptionBudget{budget("db", 0)}, layout())
	if pr.Node.Name() != "n1" || !slices.Equal(victimNames(pr), []string{"web-0"}) || pr.Violations != 0 {
		t.Fatalf("db guarded: %s %v (%d violations), want n1 [web-0] with none", pr.Node.Name(), victimNames(pr), pr.Violations)
	}
	// Fewer violations beat a lower priority: web allows none and db one.
	pr = run([]*apiv1.PodDisruptionBudget{budget("db", 1), budget("web", 0)}, layout())
	if pr.Node.Name() != "n0" || pr.Violations != 0 {
		t.Fatalf("web guarded: %s %v (%d violations), want n0", pr.Node.Name(), victimNames(pr), pr.Violations)
	}
	// A pod whose eviction is already counted (disruptedPods) is free.
	pr = run([]*apiv1.PodDisruptionBudget{budget("db", 0, "db-0"), budget("web", 0)}, layout())
	if pr.Node.Name() != "n0" || pr.Violations != 0 {
		t.Fatalf("db-0 already disrupted: %s (%d violations), want n0 with none", pr.Node.Name(), pr.Violations)
	}
	// Every candidate breaks a budget: still preempted, on the fewest.
	pr = run([]*apiv1.PodDisruptionBudget{budget("db", 0), budget("web", 0)}, layout())
	if pr.Violations != 1 {
		t.Fatalf("all guarded: %s %v (%d violations), want 1", pr.Node.Name(), victimNames(pr), pr.Violations)
	}
	if msg := preemptionMessage("0/2 nodes are available.", pr); !strings.Contains(msg, "beyond what their PodDisruptionBudgets allow") {
		t.Errorf("message %q does not say the budget is broken", msg)
	}

	// Within a node: two same-priority 2-cpu pods, one guarded. Without
	// the budget "a-free" (first by name) is reprieved and "z-guarded"
	// evicted; with it the guarded one is reprieved first.
	one := func() map[string][]*apiv1.Pod {
		return map[string][]*apiv1.Pod{
			"n0": {pod("a-free", "2", "64Mi", prio(100, map[string]string{"app": "free"})),
				pod("z-guarded", "2", "64Mi", prio(100, map[string]string{"app": "guarded"}))},
			"n1": {pod("big", "4", "64Mi", prio(2000, nil))},
		}
	}
	if pr := run(nil, one()); !slices.Equal(victimNames(pr), []string{"z-guarded"}) {
		t.Fatalf("no budget: victims %v, want [z-guarded]", victimNames(pr))
	}
	pr = run([]*apiv1.PodDisruptionBudget{budget("guarded", 0)}, one())
	if !slices.Equal(victimNames(pr), []string{"a-free"}) || pr.Violations != 0 {
		t.Fatalf("guarded: victims %v (%d violations), want [a-free] with none", victimNames(pr), pr.Violations)
	}
	// A budget of another namespace, or with an empty selector, guards
	// nothing here.
	other := budget("guarded", 0)
	other.Metadata.Namespace = "other"
	empty := budget("x", 0)
	empty.Spec.Selector = &apiv1.LabelSelector{}
	if pr := run([]*apiv1.PodDisruptionBudget{other, empty}, one()); !slices.Equal(victimNames(pr), []string{"z-guarded"}) {
		t.Fatalf("foreign and empty budgets: victims %v, want [z-guarded]", victimNames(pr))
	}
}
