package netpolicy_test

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/hostlab"
	"github.com/skiffhq/skiff/integration/testutil"
)

// The test's namespaces; the pods follow, one document each.
const namespacesManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: np-a
  labels:
    team: a
---
apiVersion: v1
kind: Namespace
metadata:
  name: np-b
  labels:
    team: b
`

// testPod serves HTTP (its name) on its named port "http" (8080).
type testPod struct{ Name, NS, App, Node, Registry string }

// web1/web2 are the servers; cli1/cli2 their clients in np-a; cli3 a
// client in np-b. Two pods of each kind sit on different workers.
var testPods = []testPod{
	{Name: "web1", NS: "np-a", App: "web", Node: "w1"},
	{Name: "web2", NS: "np-a", App: "web", Node: "w2"},
	{Name: "cli1", NS: "np-a", App: "cli", Node: "w1"},
	{Name: "cli2", NS: "np-a", App: "cli", Node: "w2"},
	{Name: "cli3", NS: "np-b", App: "cli", Node: "w2"},
}

// Ingress to np-a's web pods: only from np-a's clients, on the named port.
const webIngress = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-clients
  namespace: np-a
spec:
  podSelector:
    matchLabels:
      app: web
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app: cli
      ports:
        - port: http
`

// Also from any pod of a namespace labelled team=b.
const webFromTeamB = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-team-b
  namespace: np-a
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              team: b
`

// Egress of np-b's clients: the cluster range except worker w1's pods.
const cliEgress = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: cli-not-to-w1
  namespace: np-b
spec:
  podSelector:
    matchLabels:
      app: cli
  policyTypes: [Egress]
  egress:
    - to:
        - ipBlock:
            cidr: %s
            except: [%s]
`

// TestNetworkPolicyAcrossHosts: a table of allowed and denied pod pairs
// (same node and across nodes, ingress and egress, namespace selectors,
// ipBlock), each pair checked both ways, before any policy, after each
// policy, and after the policies are deleted.
func TestNetworkPolicyAcrossHosts(t *testing.T) {
	start := time.Now()
	lab := hostlab.ForTest(t)
	ctlBin, regBin, err := hostlab.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	registry, err := lab.StartRegistry(regBin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := hostlab.NewCluster(lab, ctlBin, registry, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, w := range []string{"w1", "w2"} {
				t.Logf("%s log tail:\n%s", w, c.Node[w].Tail(40))
			}
		}
	})
	testutil.WaitFor(t, 60*time.Second, "workers Ready", func() bool {
		ns, err := c.Nodes()
		return err == nil && ns["w1"].Ready().Status == "True" && ns["w2"].Ready().Status == "True"
	})
	t.Logf("cluster up after %.1fs", time.Since(start).Seconds())

	var manifest strings.Builder
	var body strings.Builder
	for _, p := range testPods {
		p.Registry = registry
		fmt.Fprintf(&body, "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n  labels:\n    app: %s\n    netpol-test: \"1\"\n"+
			"spec:\n  nodeSelector:\n    kubernetes.io/hostname: %s\n  containers:\n    - name: web\n      image: %s/skiff/hello:1\n"+
			"      command: [\"/bin/sh\", \"-c\", \"mkdir -p /tmp/www && echo %s > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www\"]\n"+
			"      ports:\n        - name: http\n          containerPort: 8080\n"+
			"      readinessProbe:\n        httpGet:\n          path: /\n          port: 8080\n        periodSeconds: 1\n"+
			"      resources:\n        requests:\n          cpu: 10m\n          memory: 16Mi\n",
			p.Name, p.NS, p.App, p.Node, p.Registry, p.Name)
	}
	manifest.WriteString(namespacesManifest)
	manifest.WriteString(body.String())
	if out, err := c.Apply(manifest.String()); err != nil {
		t.Fatalf("apply pods: %v\n%s", err, out)
	}
	pods := map[string]hostlab.Pod{}
	testutil.WaitFor(t, 120*time.Second, "5 ready test pods", func() bool {
		for _, ns := range []string{"np-a", "np-b"} {
			ps, err := c.Pods(ns, "netpol-test=1")
			if err != nil {
				return false
			}
			for _, p := range ps {
				if p.Ready() {
					pods[p.Metadata.Name] = p
				}
			}
		}
		return len(pods) == len(testPods)
	})
	for _, p := range testPods {
		if got := pods[p.Name].Spec.NodeName; got != p.Node {
			t.Fatalf("pod %s on %q, want %s", p.Name, got, p.Node)
		}
	}
	t.Logf("pods ready after %.1fs", time.Since(start).Seconds())

	reach := func(from, to string) bool {
		p := pods[from]
		h := c.Host(p.Spec.NodeName)
		out, err := lab.ExecInNetns(h, hostlab.PodNetns(hostlab.WorkerDataDir, p),
			"curl", "-sS", "--fail", "--connect-timeout", "1", "-m", "2", "http://"+pods[to].Status.PodIP+":8080/")
		return err == nil && strings.TrimSpace(out) == to
	}
	// expect lists the denied ordered pairs; every other pair is allowed.
	check := func(phase string, denied ...string) {
		t.Helper()
		deny := map[string]bool{}
		for _, d := range denied {
			deny[d] = true
		}
		var wrong []string
		ok := testutil.Eventually(20*time.Second, func() bool {
			var mu sync.Mutex
			var wg sync.WaitGroup
			wrong = nil
			for _, a := range testPods {
				for _, b := range testPods {
					if a.Name == b.Name {
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						pair := a.Name + ">" + b.Name
						if got := reach(a.Name, b.Name); got == deny[pair] {
							mu.Lock()
							wrong = append(wrong, fmt.Sprintf("%s (%s>%s) allowed=%v", pair, a.Node, b.Node, got))
							mu.Unlock()
						}
					}()
				}
			}
			wg.Wait()
			return len(wrong) == 0
		})
		if !ok {
			sort.Strings(wrong)
			t.Fatalf("%s: pairs not as the policies say:\n  %s", phase, strings.Join(wrong, "\n  "))
		}
		t.Logf("%s: %d ordered pairs checked, denied %v", phase, len(testPods)*(len(testPods)-1), denied)
	}
	// applyTimed applies a policy and measures, on each worker, from the
	// API's acknowledgement (bracketed by ctl apply's start and return) to
	// the nftables commit the agent logs for it.
	applyTimed := func(what, manifest string, policies int) {
		t.Helper()
		before := time.Now()
		if out, err := c.Apply(manifest); err != nil {
			t.Fatalf("apply %s: %v\n%s", what, err, out)
		}
		after := time.Now()
		re := regexp.MustCompile(`network policies programmed.*? policies=` + strconv.Itoa(policies) + ` .*?eventToCommit=(\S+) commitUnixNano=(\d+)`)
		for _, w := range []string{"w1", "w2"} {
			var commit time.Time
			var onNode string
			testutil.WaitFor(t, 10*time.Second, w+" programs "+what, func() bool {
				for _, m := range re.FindAllStringSubmatch(c.Node[w].Output(), -1) {
					n, _ := strconv.ParseInt(m[2], 10, 64)
					if ts := time.Unix(0, n); ts.After(before) {
						commit, onNode = ts, m[1]
						return true
					}
				}
				return false
			})
			upper, lower := commit.Sub(before), commit.Sub(after)
			t.Logf("netpol-latency: %s on %s: ack->commit <= %.1f ms (from ctl apply's start; %.1f ms after it returned; watch event->commit on the node %s)",
				what, w, float64(upper.Microseconds())/1000, float64(lower.Microseconds())/1000, onNode)
			if lower > 100*time.Millisecond {
				t.Errorf("%s reached %s's data path %.1f ms after ctl apply returned, want under 100 ms", what, w, float64(lower.Microseconds())/1000)
			}
		}
	}

	check("before any policy")

	applyTimed("web-from-clients", webIngress, 1)
	// web pods: only np-a's clients (same node and across), not each other
	// nor np-b's client.
	ingressDenied := []string{"web2>web1", "web1>web2", "cli3>web1", "cli3>web2"}
	check("web-from-clients (ingress, podSelector, named port)", ingressDenied...)

	applyTimed("web-from-team-b", webFromTeamB, 2)
	check("plus web-from-team-b (namespaceSelector)", "web2>web1", "web1>web2")

	nodes, err := c.Nodes()
	w1CIDR := nodes["w1"].Spec.PodCIDR
	if err != nil || w1CIDR == "" {
		t.Fatalf("w1's podCIDR: %q %v", w1CIDR, err)
	}
	applyTimed("cli-not-to-w1", fmt.Sprintf(cliEgress, c.ClusterCIDR, w1CIDR), 3)
	// cli3 (w2) may no longer open connections to w1's pods; replies to
	// connections from them still pass.
	check("plus cli-not-to-w1 (egress, ipBlock with except)", "web2>web1", "web1>web2", "cli3>web1", "cli3>cli1")

	for _, np := range []string{"np-a/web-from-clients", "np-a/web-from-team-b", "np-b/cli-not-to-w1"} {
		ns, name, _ := strings.Cut(np, "/")
		if out, err := c.Ctl("delete", "networkpolicy", name, "-n", ns); err != nil {
			t.Fatalf("delete %s: %v\n%s", np, err, out)
		}
	}
	check("after the policies are deleted")
}
