package multihost_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/hostlab"
	"github.com/skiffhq/skiff/integration/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv(envProbe) != "" {
		os.Exit(runProbe(os.Stdout))
	}
	os.Exit(m.Run())
}

// web answers / with its pod name and a random start id (written once,
// at start: the same answer later means the same container), and
// /cgi-bin/ip with the client address it sees.
const webManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: mh
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: mh
spec:
  replicas: %[2]d
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:%[4]s
      containers:
        - name: web
          image: %[3]s/skiff/hello:1
          command: ["/bin/sh", "-c", "mkdir -p /tmp/www/cgi-bin && echo \"$(hostname) start $(cat /proc/sys/kernel/random/uuid)\" > /tmp/www/index.html && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /tmp/www/cgi-bin/ip && chmod +x /tmp/www/cgi-bin/ip && exec httpd -f -p 8080 -h /tmp/www"]
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /
              port: 8080
            periodSeconds: 1
          resources:
            requests:
              cpu: 10m
              memory: 16Mi
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: mh
spec:
  type: NodePort
  selector:
    app: %[1]s
  ports:
    - port: 80
      targetPort: 8080
`

func webApp(name string, replicas int, registry, onNode string) string {
	sel := ""
	if onNode != "" {
		sel = "\n      nodeSelector:\n        kubernetes.io/hostname: " + onNode
	}
	return fmt.Sprintf(webManifest, name, replicas, registry, sel)
}

// A cluster over five machines (three control nodes, two workers; each its
// own network, mount, UTS and PID namespace on a lab bridge with no route
// out), set up with the commands of the README, shows Kubernetes' network
// model across hosts and the failure handling of the design.
func TestMultiHost(t *testing.T) {
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
	t.Cleanup(func() { dumpOnFailure(t, lab) }) // runs before the lab closes
	c, err := hostlab.NewCluster(lab, ctlBin, registry, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	w1, w2 := c.Workers[0], c.Workers[1]
	waitNodesReady(t, c, 60*time.Second, "w1", "w2")
	t.Logf("cluster of 3 control nodes and 2 workers up after %.1fs", time.Since(start).Seconds())

	if out, err := c.Apply(webApp("web", 4, registry, "")); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	pods := waitPods(t, c, 120*time.Second, "mh", "web", "4 ready web pods on both workers", func(ps []pod) bool {
		on := hostlab.ReadyOn(ps)
		return len(ps) == 4 && on["w1"]+on["w2"] == 4 && on["w1"] > 0 && on["w2"] > 0
	})
	t.Logf("web app spread over both workers after %.1fs:\n%s", time.Since(start).Seconds(), describePods(pods))
	dataDir := hostlab.WorkerDataDir
	byNode := map[string]pod{}
	for _, p := range pods {
		byNode[p.Spec.NodeName] = p
	}
	onW1, onW2 := byNode["w1"], byNode["w2"]

	t.Run("PodToPodAcrossWorkersKeepsSourceIP", func(t *testing.T) {
		for _, pair := range [][2]pod{{onW1, onW2}, {onW2, onW1}} {
			from, to := pair[0], pair[1]
			host := map[string]*hostlab.Host{"w1": w1, "w2": w2}[from.Spec.NodeName]
			got, err := c.Curl(host, hostlab.PodNetns(dataDir, from), "http://"+to.Status.PodIP+":8080/cgi-bin/ip")
			if err != nil {
				t.Fatalf("pod %s (%s, on %s) to pod %s (%s, on %s): %v", from.Metadata.Name, from.Status.PodIP, from.Spec.NodeName,
					to.Metadata.Name, to.Status.PodIP, to.Spec.NodeName, err)
			}
			// httpd listens on IPv6 too: an IPv4 client shows as [::ffff:a.b.c.d].
			got = strings.TrimPrefix(strings.Trim(got, "[]"), "::ffff:")
			if got != from.Status.PodIP {
				t.Errorf("pod on %s saw the request of pod %s from %s, want the pod's own IP (no NAT)", to.Spec.NodeName, from.Status.PodIP, got)
			} else {
				t.Logf("pod-to-pod %s (%s) -> %s (%s): the receiver saw %s", from.Spec.NodeName, from.Status.PodIP, to.Spec.NodeName, to.Status.PodIP, got)
			}
		}
	})

	svc, err := c.Service("mh", "web")
	if err != nil || svc.Spec.ClusterIP == "" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].NodePort == 0 {
		t.Fatalf("service web: %+v %v", svc, err)
	}
	clusterIP, nodePort := svc.Spec.ClusterIP, svc.Spec.Ports[0].NodePort
	waitEndpoints(t, c, "web", 4)

	// Every request from a vantage must succeed, and the answers must come
	// from pods on both workers (the bug this guards against: only the
	// pods of the node that took the request answered).
	spread := func(t *testing.T, what string, get func() (string, error)) {
		t.Helper()
		seen := map[string]bool{}
		for i := 0; i < 8; i++ {
			body, err := get()
			if err != nil {
				t.Fatalf("%s, request %d of 8: %v", what, i+1, err)
			}
			seen[podNode(pods, strings.Fields(body + " ?")[0])] = true
		}
		if !seen["w1"] || !seen["w2"] {
			t.Errorf("%s: 8 answers came from pods on %v, want pods on both workers", what, seen)
		}
		t.Logf("%s: 8 of 8 answered, from pods on %v", what, keys(seen))
	}
	t.Run("ClusterIPFromEachWorkerAndFromAPod", func(t *testing.T) {
		url := "http://" + clusterIP + "/"
		for _, h := range c.Workers {
			spread(t, "ClusterIP "+clusterIP+" from host "+h.Name, func() (string, error) { return c.Curl(h, "", url) })
		}
		spread(t, "ClusterIP "+clusterIP+" from pod "+onW1.Metadata.Name+" on w1", func() (string, error) {
			return c.Curl(w1, hostlab.PodNetns(dataDir, onW1), url)
		})
	})

	t.Run("NodePortOnEveryWorker", func(t *testing.T) {
		// Control nodes run no agent, hence no Service proxy: NodePorts are
		// served by the workers. Each is asked from every other machine.
		for _, target := range c.Workers {
			url := fmt.Sprintf("http://%s:%d/", target.IP, nodePort)
			for _, from := range append(append([]*hostlab.Host{lab.Admin}, c.Controls...), c.Workers...) {
				spread(t, "NodePort "+url+" from "+from.Name, func() (string, error) { return c.Curl(from, "", url) })
			}
		}
	})

	t.Run("GossipRefusesAMemberWithoutTheKey", func(t *testing.T) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		seed := fmt.Sprintf("%s:7946", c.Controls[0].IP)
		probe := func(name, key string) string {
			out, err := lab.Exec(lab.Admin, "env", envProbe+"="+name, envProbeKey+"="+key, envProbeBind+"="+hostlab.AdminIP.String(),
				envProbeSeed+"="+seed, envProbeWant+"=6", self)
			if err != nil {
				t.Fatalf("probe %s: %v", name, err)
			}
			return out
		}
		if out := probe("rogue", "random"); !strings.HasPrefix(out, "refused: ") {
			t.Errorf("a member with a wrong gossip key was let in: %q", out)
		} else {
			t.Logf("member with a wrong key: %s", strings.TrimSpace(out))
		}
		// The same probe with the key a worker was given is a member: the
		// refusal above is the key's doing.
		out := probe("keyholder", w1.Path(dataDir+"/pki/gossip.key"))
		if !regexp.MustCompile(`joined\nmembers 6\n`).MatchString(out) {
			t.Errorf("a member with the cluster's key: %q, want joined and 6 alive members (5 nodes and itself)", out)
		}
		if strings.Contains(out, "rogue") {
			t.Errorf("the cluster's members know the member without the key: %q", out)
		}
		t.Logf("member with the cluster's key: %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "))
	})

	t.Run("KilledWorkerNotReadyWhileOneCutFromLeaderAloneStaysReady", func(t *testing.T) { partitionAndKill(t, c) })

	t.Run("TwoAgentsOnOneMachine", func(t *testing.T) { twoAgents(t, c, registry) })
	t.Logf("multi-host test done after %.1fs", time.Since(start).Seconds())
}

// partitionAndKill cuts w2 from the leader's host alone, and while it is
// cut kills w1's ctl (kill -9): w1 goes NotReady and its pods run on w2,
// and w2 (which every other member still reaches) stays Ready throughout.
// Then w1 comes back with the same command.
func partitionAndKill(t *testing.T, c *hostlab.Cluster) {
	w2 := c.Workers[1]
	leader := leaderHost(t, c)
	if err := c.Lab.Partition(w2, leader); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	healed := false
	defer func() {
		if !healed {
			_ = c.Lab.Heal(w2, leader)
		}
	}()
	// w2 must stay Ready the whole time; watched from here on.
	w2Ready := func() {
		ns, err := c.Nodes()
		if err != nil {
			return // an election or failover; the next poll tells
		}
		if st := ns["w2"].Ready().Status; st != "True" {
			t.Fatalf("w2, cut off from the leader %s only, was declared %s after %.1fs", leader.Name, st, time.Since(cut).Seconds())
		}
	}
	// Longer than gossip's detection (about 3 s) and the heartbeat grace.
	for time.Since(cut) < 8*time.Second {
		w2Ready()
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("w2 cut off from the leader %s for %.1fs: still Ready", leader.Name, time.Since(cut).Seconds())

	c.Node["w1"].Kill()
	killed := time.Now()
	var w1Ready hostlab.Condition
	testutil.WaitFor(t, 30*time.Second, "w1 NotReady after kill -9", func() bool {
		w2Ready()
		ns, err := c.Nodes()
		w1Ready = ns["w1"].Ready()
		return err == nil && w1Ready.Status != "True"
	})
	notReady := time.Since(killed)
	// Gossip, not the end of the heartbeat grace (6 s), must have said so.
	if !strings.Contains(w1Ready.Message, "gossip") {
		t.Errorf("w1 went %s after %.1fs with %q: not gossip's confirmed death", w1Ready.Status, notReady.Seconds(), w1Ready.Message)
	}
	waitPods(t, c, 60*time.Second, "mh", "web", "4 ready web pods off w1", func(ps []pod) bool {
		w2Ready()
		on := hostlab.ReadyOn(ps)
		return on["w2"] == 4 && len(ps) == 4
	})
	moved := time.Since(killed)
	t.Logf("w1 killed (kill -9): NotReady after %.1fs (%s; goal 3 s), its pods running on w2 after %.1fs (goal 10 s); w2 stayed Ready, cut from leader %s for %.1fs",
		notReady.Seconds(), w1Ready.Message, moved.Seconds(), leader.Name, time.Since(cut).Seconds())
	fmt.Printf("multihost: worker kill -9: NotReady after %.1f s, pods running elsewhere after %.1f s\n", notReady.Seconds(), moved.Seconds())
	if err := c.Lab.Heal(w2, leader); err != nil {
		t.Fatal(err)
	}
	healed = true
	if err := c.Node["w1"].Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node["w1"].WaitLog(regexp.MustCompile(`worker node w1 registered`), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	waitNodesReady(t, c, 60*time.Second, "w1", "w2")
}

// twoAgents runs a second worker (w1b) on w1's machine with its own data
// dir, cgroup parent and bridge, gives each a pod, and restarts w1b
// (kill -9, same command): w1's pod keeps its container (same answer,
// written at its start), its network namespace and its IP.
func twoAgents(t *testing.T, c *hostlab.Cluster, registry string) {
	w1 := c.Workers[0]
	ip2, err := c.Lab.AddAddress(w1)
	if err != nil {
		t.Fatal(err)
	}
	// The second agent on w1's host shares its network namespace: no gossip
	// member (w1's holds port 7946) and no pod network across hosts (w1's
	// holds the vxlan device); both are on by default.
	argv := []string{c.Bin, "join", "--gossip=false", "--pod-network", "none", "--name", "w1b", "--data-dir", "/var/lib/skiff-b", "--advertise", ip2.String(),
		"--bridge", "skiffb", "--no-proxy", "--cgroup-root", w1.CgroupRoot("b"), "--insecure-registry", registry,
		"--token", c.WorkerToken, c.API}
	b, err := c.Lab.Start(w1, "ctl-b", argv...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitLog(regexp.MustCompile(`worker node w1b registered`), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	waitNodesReady(t, c, 60*time.Second, "w1", "w1b")
	for _, app := range [][2]string{{"on-a", "w1"}, {"on-b", "w1b"}} {
		if out, err := c.Apply(webApp(app[0], 1, registry, app[1])); err != nil {
			t.Fatalf("apply %s: %v\n%s", app[0], err, out)
		}
	}
	one := func(app, node string) pod {
		ps := waitPods(t, c, 90*time.Second, "mh", app, "1 ready "+app+" pod on "+node, func(ps []pod) bool {
			return len(ps) == 1 && ps[0].Ready() && ps[0].Spec.NodeName == node
		})
		return ps[0]
	}
	a := one("on-a", "w1")
	one("on-b", "w1b")
	aNetns := hostlab.PodNetns(hostlab.WorkerDataDir, a)
	before, err := c.Curl(w1, "", "http://"+a.Status.PodIP+":8080/")
	if err != nil {
		t.Fatalf("w1's pod from its host: %v", err)
	}

	b.Kill()
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitLog(regexp.MustCompile(`resuming it`), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	// w1b's agent is back and has synced its own pod: its start-up sweep
	// of leftovers is behind it.
	if _, err := b.WaitLog(regexp.MustCompile(`registered with the cluster`), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	bAfter := one("on-b", "w1b")
	if _, err := c.Curl(w1, "", "http://"+bAfter.Status.PodIP+":8080/"); err != nil {
		t.Fatalf("w1b's pod after w1b's restart: %v", err)
	}
	if strings.Contains(b.Output(), a.Metadata.UID) {
		t.Errorf("w1b's restart touched w1's pod %s:\n%s", a.Metadata.UID, b.Tail(30))
	}
	if _, err := c.Lab.Exec(w1, "test", "-e", aNetns); err != nil {
		t.Errorf("w1's pod network namespace %s is gone after w1b's restart", aNetns)
	}
	after, err := c.Curl(w1, "", "http://"+a.Status.PodIP+":8080/")
	if err != nil {
		t.Fatalf("w1's pod after w1b's restart: %v", err)
	}
	if after != before {
		t.Errorf("w1's pod answered %q before w1b's restart and %q after: its container was restarted", before, after)
	}
	aNow := one("on-a", "w1")
	if aNow.Metadata.UID != a.Metadata.UID || aNow.Status.PodIP != a.Status.PodIP || aNow.Restarts() != 0 {
		t.Errorf("w1's pod changed across w1b's restart: %+v -> %+v", a, aNow)
	}
	t.Logf("two agents on %s: w1b restarted; w1's pod %s (%s) kept its container (%q), network namespace and IP",
		w1.Name, a.Metadata.Name, a.Status.PodIP, after)
}

// waitEndpoints waits until the Service has n ready addresses.
func waitEndpoints(t *testing.T, c *hostlab.Cluster, name string, n int) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%d endpoints of %s", n, name), func() bool {
		out, err := c.Ctl("get", "endpoints", name, "-n", "mh", "-o", "yaml")
		return err == nil && strings.Count(out, "ip: 10.244.") == n
	})
}

// podNode is the node of the pod whose name (as its answer starts) is name.
func podNode(ps []pod, name string) string {
	for _, p := range ps {
		if p.Metadata.Name == name {
			return p.Spec.NodeName
		}
	}
	return "unknown pod " + name
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// dumpOnFailure prints the tail of every daemon's log of the lab.
func dumpOnFailure(t *testing.T, lab *hostlab.Lab) {
	if !t.Failed() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(lab.Dir, "logs", "*.log"))
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("--- %s:\n%s", filepath.Base(f), strings.Join(lines, "\n"))
	}
}
