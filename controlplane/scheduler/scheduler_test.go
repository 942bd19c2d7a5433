package scheduler

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func node(name string, cpu, mem string, mut ...func(*apiv1.Node)) *apiv1.Node {
	n := &apiv1.Node{
		Metadata: &apiv1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Spec:     &apiv1.NodeSpec{},
		Status: &apiv1.NodeStatus{
			Allocatable: map[string]string{"cpu": cpu, "memory": mem, "pods": "110"},
			Conditions:  []*apiv1.NodeCondition{{Type: "Ready", Status: "True"}},
		},
	}
	for _, m := range mut {
		m(n)
	}
	return n
}

func pod(name, cpu, mem string, mut ...func(*apiv1.Pod)) *apiv1.Pod {
	p := &apiv1.Pod{
		Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "x",
			Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"cpu": cpu, "memory": mem}}}}},
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

func infos(t *testing.T, nodes ...*apiv1.Node) []*NodeInfo {
	var out []*NodeInfo
	for _, n := range nodes {
		ni, err := NewNodeInfo(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ni)
	}
	return out
}

func pinfo(t *testing.T, p *apiv1.Pod) *PodInfo {
	pi, err := NewPodInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	return pi
}

func TestFilters(t *testing.T) {
	notReady := func(n *apiv1.Node) { n.Status.Conditions[0].Status = "False" }
	cordoned := func(n *apiv1.Node) { n.Spec.Unschedulable = true }
	gpu := func(n *apiv1.Node) { n.Metadata.Labels["gpu"] = "yes"; n.Metadata.Labels["cores"] = "16" }
	tainted := func(n *apiv1.Node) {
		n.Spec.Taints = []*apiv1.Taint{{Key: "dedicated", Value: "db", Effect: "NoSchedule"}}
	}
	hostPort := func(p *apiv1.Pod) {
		p.Spec.Containers[0].Ports = []*apiv1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
	}
	hostPath := func(p *apiv1.Pod) {
		p.Spec.Volumes = []*apiv1.Volume{{Name: "data", HostPath: &apiv1.HostPathVolumeSource{Path: "/srv/data"}}}
	}
	affinity := func(op string, vals ...string) func(*apiv1.Pod) {
		return func(p *apiv1.Pod) {
			p.Spec.Affinity = &apiv1.Affinity{NodeAffinity: &apiv1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &apiv1.NodeSelector{
				NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: "cores", Operator: op, Values: vals}}}}}}}
		}
	}
	cases := []struct {
		name     string
		node     *apiv1.Node
		pod      *apiv1.Pod
		existing []*apiv1.Pod
		want     string
	}{
		{"fits", node("n", "2", "4Gi"), pod("p", "500m", "128Mi"), nil, ""},
		{"not ready", node("n", "2", "4Gi", notReady), pod("p", "1", "1Mi"), nil, "node(s) were not ready"},
		{"no ready condition", node("n", "2", "4Gi", func(n *apiv1.Node) { n.Status.Conditions = nil }), pod("p", "1", "1Mi"), nil, "node(s) were not ready"},
		{"cordoned", node("n", "2", "4Gi", cordoned), pod("p", "1", "1Mi"), nil, "node(s) were unschedulable"},
		{"cordoned but tolerated", node("n", "2", "4Gi", cordoned), pod("p", "1", "1Mi", func(p *apiv1.Pod) {
			p.Spec.Tolerations = []*apiv1.Toleration{{Key: "node.kubernetes.io/unschedulable", Operator: "Exists"}}
		}), nil, ""},
		{"cpu", node("n", "1", "4Gi"), pod("p", "1500m", "1Mi"), nil, "Insufficient cpu"},
		{"cpu used by others", node("n", "1", "4Gi"), pod("p", "600m", "1Mi"), []*apiv1.Pod{pod("a", "500m", "1Mi")}, "Insufficient cpu"},
		{"memory", node("n", "4", "1Gi"), pod("p", "1", "2Gi"), nil, "Insufficient memory"},
		{"pods", node("n", "4", "1Gi", func(n *apiv1.Node) { n.Status.Allocatable["pods"] = "1" }), pod("p", "1m", "1Mi"), []*apiv1.Pod{pod("a", "1m", "1Mi")}, "Too many pods"},
		{"init container max", node("n", "1", "4Gi"), pod("p", "100m", "1Mi", func(p *apiv1.Pod) {
			p.Spec.InitContainers = []*apiv1.Container{{Name: "i", Resources: &apiv1.ResourceRequirements{Requests: map[string]string{"cpu": "2"}}}}
		}), nil, "Insufficient cpu"},
		{"nodeName other", node("n", "2", "4Gi"), pod("p", "1", "1Mi", func(p *apiv1.Pod) { p.Spec.NodeName = "m" }), nil, "node(s) didn't match the requested node name"},
		{"nodeSelector", node("n", "2", "4Gi"), pod("p", "1", "1Mi", func(p *apiv1.Pod) { p.Spec.NodeSelector = map[string]string{"gpu": "yes"} }), nil, "node(s) didn't match Pod's node affinity/selector"},
		{"nodeSelector ok", node("n", "2", "4Gi", gpu), pod("p", "1", "1Mi", func(p *apiv1.Pod) { p.Spec.NodeSelector = map[string]string{"gpu": "yes"} }), nil, ""},
		{"affinity In", node("n", "2", "4Gi", gpu), pod("p", "1", "1Mi", affinity("In", "8", "16")), nil, ""},
		{"affinity NotIn", node("n", "2", "4Gi", gpu), pod("p", "1", "1Mi", affinity("NotIn", "16")), nil, "node(s) didn't match Pod's node affinity/selector"},
		{"affinity Gt", node("n", "2", "4Gi", gpu), pod("p", "1", "1Mi", affinity("Gt", "8")), nil, ""},
		{"affinity Lt", node("n", "2", "4Gi", gpu), pod("p", "1", "1Mi", affinity("Lt", "8")), nil, "node(s) didn't match Pod's node affinity/selector"},
		{"affinity Exists missing", node("n", "2", "4Gi"), pod("p", "1", "1Mi", affinity("Exists")), nil, "node(s) didn't match Pod's node affinity/selector"},
		{"affinity DoesNotExist", node("n", "2", "4Gi"), pod("p", "1", "1Mi", affinity("DoesNotExist")), nil, ""},
		{"taint", node("n", "2", "4Gi", tainted), pod("p", "1", "1Mi"), nil, "node(s) had untolerated taint {dedicated: db}"},
		{"taint tolerated", node("n", "2", "4Gi", tainted), pod("p", "1", "1Mi", func(p *apiv1.Pod) {
			p.Spec.Tolerations = []*apiv1.Toleration{{Key: "dedicated", Operator: "Equal", Value: "db", Effect: "NoSchedule"}}
		}), nil, ""},
		{"taint wrong value", node("n", "2", "4Gi", tainted), pod("p", "1", "1Mi", func(p *apiv1.Pod) {
			p.Spec.Tolerations = []*apiv1.Toleration{{Key: "dedicated", Value: "web"}}
		}), nil, "node(s) had untolerated taint {dedicated: db}"},
		{"tolerate everything", node("n", "2", "4Gi", tainted), pod("p", "1", "1Mi", func(p *apiv1.Pod) {
			p.Spec.Tolerations = []*apiv1.Toleration{{Operator: "Exists"}}
		}), nil, ""},
		{"host port conflict", node("n", "2", "4Gi"), pod("p", "1m", "1Mi", hostPort), []*apiv1.Pod{pod("a", "1m", "1Mi", hostPort)}, "node(s) didn't have free ports for the requested pod ports"},
		{"host path conflict", node("n", "2", "4Gi"), pod("p", "1m", "1Mi", hostPath), []*apiv1.Pod{pod("a", "1m", "1Mi", hostPath)}, "node(s) had a hostPath volume conflict"},
	}
	alg := NewAlgorithm(1)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ni := infos(t, c.node)[0]
			for _, e := range c.existing {
				ni.AddPod(pinfo(t, e))
			}
			pi := pinfo(t, c.pod)
			alg.prepare(pi)
			got := alg.firstFailure(pi, ni)
			if got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestScores(t *testing.T) {
	alg := NewAlgorithm(1)
	// Least requested: the emptier node wins.
	busy, idle := infos(t, node("busy", "4", "8Gi"), node("idle", "4", "8Gi"))[0], infos(t, node("idle", "4", "8Gi"))[0]
	busy.AddPod(pinfo(t, pod("x", "3", "6Gi")))
	p := pinfo(t, pod("p", "500m", "512Mi"))
	if got, _ := alg.Place(p, []*NodeInfo{busy, idle}); got.Name() != "idle" {
		t.Fatalf("least requested chose %s", got.Name())
	}
	// Balanced allocation: prefer the node whose cpu and memory stay even.
	if b, u := scoreBalanced(p, idle), scoreBalanced(pinfo(t, pod("q", "3", "1Mi")), idle); b <= u {
		t.Fatalf("balanced %d should beat unbalanced %d", b, u)
	}
	// Preferred affinity outweighs a slightly emptier node.
	ssd := infos(t, node("ssd", "4", "8Gi", func(n *apiv1.Node) { n.Metadata.Labels["disk"] = "ssd" }))[0]
	ssd.AddPod(pinfo(t, pod("y", "500m", "512Mi")))
	pref := pinfo(t, pod("p", "100m", "64Mi", func(p *apiv1.Pod) {
		p.Spec.Affinity = &apiv1.Affinity{NodeAffinity: &apiv1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []*apiv1.PreferredSchedulingTerm{
			{Weight: 50, Preference: &apiv1.NodeSelectorTerm{MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: "disk", Operator: "In", Values: []string{"ssd"}}}}}}}}
	}))
	if got, _ := alg.Place(pref, []*NodeInfo{idle, ssd}); got.Name() != "ssd" {
		t.Fatalf("preferred affinity chose %s", got.Name())
	}
}

func TestSpreadsOwnerAcrossNodes(t *testing.T) {
	alg := NewAlgorithm(7)
	nodes := infos(t, node("a", "8", "16Gi"), node("b", "8", "16Gi"), node("c", "8", "16Gi"))
	count := map[string]int{}
	for i := 0; i < 5; i++ {
		p := pinfo(t, pod(fmt.Sprintf("web-%d", i), "500m", "128Mi", func(p *apiv1.Pod) {
			p.Metadata.OwnerReferences = []*apiv1.OwnerReference{{Kind: "ReplicaSet", Name: "web-1", Controller: proto.Bool(true)}}
		}))
		n, err := alg.Place(p, nodes)
		if err != nil {
			t.Fatal(err)
		}
		n.AddPod(p)
		count[n.Name()]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if count[n] < 1 || count[n] > 2 {
			t.Fatalf("5 replicas over 3 nodes spread as %v", count)
		}
	}
}

func TestTiesBrokenFairly(t *testing.T) {
	alg := NewAlgorithm(3)
	nodes := infos(t, node("a", "64", "64Gi"), node("b", "64", "64Gi"), node("c", "64", "64Gi"))
	count := map[string]int{}
	for i := 0; i < 300; i++ {
		// No owner, no accounting: every node scores the same every time.
		n, err := alg.Place(pinfo(t, pod("p", "1m", "1Mi")), nodes)
		if err != nil {
			t.Fatal(err)
		}
		count[n.Name()]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if count[n] < 60 {
			t.Fatalf("ties not shared fairly: %v", count)
		}
	}
}

func TestUnschedulableReasonMessage(t *testing.T) {
	alg := NewAlgorithm(1)
	nodes := infos(t,
		node("a", "1", "4Gi"), node("b", "1", "4Gi"), node("c", "1", "4Gi"),
		node("d", "8", "16Gi"), node("e", "8", "16Gi"))
	p := pinfo(t, pod("p", "2", "1Gi", func(p *apiv1.Pod) { p.Spec.NodeSelector = map[string]string{"zone": "west"} }))
	// a-c fail the selector first (filters run in order); make d, e match
	// the selector but lack cpu to get two distinct reasons.
	for _, n := range nodes[3:] {
		n.Node.Metadata.Labels["zone"] = "west"
		n.AddPod(pinfo(t, pod("hog-"+n.Name(), "7", "1Mi")))
	}
	_, err := alg.Place(p, nodes)
	want := "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) didn't match Pod's node affinity/selector."
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if _, err := alg.Place(p, nil); err == nil || err.Error() != "0/0 nodes are available: no nodes registered." {
		t.Fatalf("no nodes: %v", err)
	}
}

func TestRemovePodReleasesEverything(t *testing.T) {
	ni := infos(t, node("n", "2", "4Gi"))[0]
	p := pod("p", "1", "1Gi", func(p *apiv1.Pod) {
		p.Spec.Containers[0].Ports = []*apiv1.ContainerPort{{ContainerPort: 80, HostPort: 80}}
	})
	ni.AddPod(pinfo(t, p))
	ni.AddPod(pinfo(t, p)) // idempotent
	if ni.Requested.MilliCPU != 1000 || ni.PodCount() != 1 {
		t.Fatalf("after add: %+v", ni.Requested)
	}
	ni.RemovePod(p)
	if ni.Requested != (Resources{}) || len(ni.hostPorts) != 0 || ni.PodCount() != 0 {
		t.Fatalf("after remove: %+v ports %v", ni.Requested, ni.hostPorts)
	}
}

// withoutSkip copies filters and scores with every Relevant removed: the
// whole chain runs for every pod, as before PreFilter-Skip.
func withoutSkip(a *Algorithm) *Algorithm {
	b := NewAlgorithm(1)
	b.Filters, b.Scores = nil, nil
	for _, f := range a.Filters {
		f.Relevant = nil
		b.Filters = append(b.Filters, f)
	}
	for _, s := range a.Scores {
		s.Relevant = nil
		b.Scores = append(b.Scores, s)
	}
	return b
}

func skipTestNodes(t *testing.T) []*NodeInfo {
	nodes := infos(t,
		node("ok", "4", "8Gi"),
		node("b", "2", "16Gi"),
		node("small", "100m", "8Gi"),
		node("nomem", "4", "10Mi"),
		node("notready", "4", "8Gi", func(n *apiv1.Node) { n.Status.Conditions[0].Status = "False" }),
		node("cordoned", "4", "8Gi", func(n *apiv1.Node) { n.Spec.Unschedulable = true }),
		node("tainted", "4", "8Gi", func(n *apiv1.Node) {
			n.Spec.Taints = []*apiv1.Taint{{Key: "k", Effect: "NoSchedule"}}
		}),
		node("preferred", "4", "8Gi", func(n *apiv1.Node) {
			n.Spec.Taints = []*apiv1.Taint{{Key: "k", Effect: "PreferNoSchedule"}}
		}),
		node("full", "4", "8Gi", func(n *apiv1.Node) { n.Status.Allocatable["pods"] = "0" }),
	)
	nodes[0].AddPod(pinfo(t, pod("x1", "1", "1Gi", owned, withHostPort(8080), withHostPath("/data"))))
	nodes[1].AddPod(pinfo(t, pod("x2", "500m", "3Gi")))
	return nodes
}

func owned(p *apiv1.Pod) {
	p.Metadata.OwnerReferences = []*apiv1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", Uid: "u", Controller: proto.Bool(true)}}
}

func withHostPort(port int32) func(*apiv1.Pod) {
	return func(p *apiv1.Pod) {
		p.Spec.Containers[0].Ports = []*apiv1.ContainerPort{{ContainerPort: 80, HostPort: port}}
	}
}

func withHostPath(path string) func(*apiv1.Pod) {
	return func(p *apiv1.Pod) {
		p.Spec.Volumes = []*apiv1.Volume{{Name: "v", HostPath: &apiv1.HostPathVolumeSource{Path: path}}}
	}
}

func skipTestPods() []*apiv1.Pod {
	return []*apiv1.Pod{
		pod("plain", "500m", "1Gi"),
		pod("owned", "250m", "2Gi", owned),
		pod("named", "500m", "1Gi", func(p *apiv1.Pod) { p.Spec.NodeName = "b" }),
		pod("selector", "500m", "1Gi", func(p *apiv1.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "ok"} }),
		pod("required", "500m", "1Gi", func(p *apiv1.Pod) {
			p.Spec.Affinity = &apiv1.Affinity{NodeAffinity: &apiv1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &apiv1.NodeSelector{
				NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "NotIn", Values: []string{"ok"}}}}}}}}
		}),
		pod("tolerant", "500m", "1Gi", func(p *apiv1.Pod) {
			p.Spec.Tolerations = []*apiv1.Toleration{{Key: "k", Operator: "Exists"}}
		}),
		pod("port", "500m", "1Gi", withHostPort(8080)),
		pod("path", "500m", "1Gi", withHostPath("/data")),
		pod("prefers", "500m", "1Gi", func(p *apiv1.Pod) {
			p.Spec.Affinity = &apiv1.Affinity{NodeAffinity: &apiv1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []*apiv1.PreferredSchedulingTerm{
				{Weight: 10, Preference: &apiv1.NodeSelectorTerm{MatchExpressions: []*apiv1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{"b"}}}}}}}}
		}),
	}
}

// Skipping the filters a pod says it is not concerned by gives the same
// verdict, and the same reason, as running the whole chain, for pods of
// every shape on nodes of every shape.
func TestSkippedFiltersGiveTheFullChainsVerdict(t *testing.T) {
	nodes := skipTestNodes(t)
	skip := NewAlgorithm(1)
	full := withoutSkip(skip)
	for _, p := range skipTestPods() {
		pi := pinfo(t, p)
		skip.prepare(pi)
		full.prepare(pi)
		if len(full.checks) != len(DefaultFilters) {
			t.Fatalf("without skip %d filters run, want %d", len(full.checks), len(DefaultFilters))
		}
		for _, n := range nodes {
			if got, want := skip.firstFailure(pi, n), full.firstFailure(pi, n); got != want {
				t.Errorf("pod %s on %s: with skip %q, whole chain %q", p.GetMetadata().GetName(), n.Name(), got, want)
			}
		}
	}
	// The plain pod is the fast path: only the filters no pod escapes run.
	skip.prepare(pinfo(t, pod("plain", "1", "1Gi")))
	if len(skip.checks) != 4 {
		t.Errorf("a plain pod runs %d filters, want 4 (ready, unschedulable, taints, resources)", len(skip.checks))
	}
}

// Skipped scores add the same to every node: the ranking (each node's
// score relative to another's) is the full table's.
func TestSkippedScoresKeepTheRanking(t *testing.T) {
	nodes := skipTestNodes(t)
	skip := NewAlgorithm(1)
	full := withoutSkip(skip)
	for _, p := range skipTestPods() {
		pi := pinfo(t, p)
		skip.prepare(pi)
		full.prepare(pi)
		base, fullBase := skip.score(pi, nodes[0]), full.score(pi, nodes[0])
		for _, n := range nodes[1:] {
			if got, want := skip.score(pi, n)-base, full.score(pi, n)-fullBase; got != want {
				t.Errorf("pod %s on %s: relative score with skip %d, full table %d", p.GetMetadata().GetName(), n.Name(), got, want)
			}
		}
	}
}

// A filter registered beside the defaults runs, on every node looked at,
// for every pod it says it concerns, plain pods included (a hard-coded
// fast path for plain pods once skipped any filter it did not know), and
// for no other pod.
func TestRegisteredFilterRunsForEveryPodItConcerns(t *testing.T) {
	calls := map[string]int{}
	gpu := Filter{
		Name:     "GPU",
		Relevant: func(p *PodInfo) bool { return p.Pod.GetMetadata().GetLabels()["gpu"] == "true" },
		Check: func(p *PodInfo, n *NodeInfo) string {
			calls[p.Pod.GetMetadata().GetName()]++
			if n.Node.GetMetadata().GetLabels()["gpu"] != "true" {
				return "node(s) had no GPU"
			}
			return ""
		},
	}
	a := NewAlgorithm(1)
	a.Filters = append(append([]Filter(nil), DefaultFilters...), gpu)
	var nodes []*NodeInfo
	for i := 0; i < 200; i++ {
		nodes = append(nodes, infos(t, node(fmt.Sprintf("n%d", i), "64", "64Gi", func(n *apiv1.Node) {
			if i == 150 {
				n.Metadata.Labels["gpu"] = "true"
			}
		}))...)
	}
	wantsGPU := func(p *apiv1.Pod) { p.Metadata.Labels = map[string]string{"gpu": "true"} }
	var pods []*apiv1.Pod
	for _, p := range skipTestPods() {
		pods = append(pods, p, pod(p.GetMetadata().GetName()+"-gpu", "100m", "100Mi", wantsGPU))
	}
	pods = append(pods, pod("plain-owned-gpu", "100m", "100Mi", owned, wantsGPU))
	for _, p := range pods {
		name := p.GetMetadata().GetName()
		if p.Spec.NodeName != "" || p.Spec.NodeSelector != nil || p.Spec.Affinity.GetNodeAffinity().GetRequiredDuringSchedulingIgnoredDuringExecution() != nil {
			continue // pinned elsewhere: the GPU node would not fit anyway
		}
		got, _, err := a.PlaceSampled(pinfo(t, p), nodes, 0, NodesToScore(len(nodes), 0))
		relevant := p.Metadata.Labels["gpu"] == "true"
		switch {
		case relevant && err != nil:
			t.Errorf("pod %s: %v", name, err)
		case relevant && got.Name() != "n150":
			t.Errorf("pod %s placed on %s, want the only GPU node n150", name, got.Name())
		case relevant && calls[name] < 151:
			t.Errorf("pod %s: GPU filter ran on %d nodes, want every node filtered (151)", name, calls[name])
		case !relevant && calls[name] != 0:
			t.Errorf("pod %s does not ask for a GPU, yet the GPU filter ran %d times", name, calls[name])
		}
	}
	if calls["plain-gpu"] == 0 {
		t.Fatal("the GPU filter never ran for the plain pod that asks for one")
	}
}
