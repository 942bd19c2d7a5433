package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// cpEnv is a control plane with every leader loop and hollow nodes
// (hollow-0, hollow-1, …), the cluster's real authorizer, and an admin
// client config for ctl.
type cpEnv struct {
	t      *testing.T
	c      *cptest.Cluster
	config string
	cl     *client.Client
	ctx    context.Context
}

func newCPEnv(t *testing.T, hollowNodes int) *cpEnv {
	t.Helper()
	c := cptest.Start(t, cptest.Options{ControlNodes: 1, HollowNodes: hollowNodes,
		TuneAPI: func(cfg *api.Config) { cfg.Authorizer = apitest.CertGroups(node.NewAuthorizer(nil)) }})
	path, err := c.API.WriteClientConfig(t.TempDir(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return &cpEnv{t: t, c: c, config: path, cl: c.Client(t), ctx: ctx}
}

// configFor writes a client config for another user (viewer: "user:viewer-…").
func (e *cpEnv) configFor(user string) string {
	e.t.Helper()
	path, err := e.c.API.WriteClientConfig(e.t.TempDir(), user)
	if err != nil {
		e.t.Fatal(err)
	}
	return path
}

func (e *cpEnv) ctlAs(config, stdin string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	var out, errb bytes.Buffer
	code = cli.Main(append([]string{"--config", config}, args...), cli.Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return out.String(), errb.String(), code
}

func (e *cpEnv) ctl(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	return e.ctlAs(e.config, stdin, args...)
}

func (e *cpEnv) mustCtl(stdin string, args ...string) string {
	e.t.Helper()
	out, errs, code := e.ctl(stdin, args...)
	if code != 0 {
		e.t.Fatalf("ctl %s: exit %d: %s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// pods lists the pods labelled app=NAME, by node.
func (e *cpEnv) podsByNode(app string) map[string][]*apiv1.Pod {
	e.t.Helper()
	pods, _, err := client.List[*apiv1.Pod](e.ctx, e.cl, client.ListOptions{Namespace: "default", LabelSelector: "app=" + app})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]*apiv1.Pod{}
	for _, p := range pods {
		out[p.GetSpec().GetNodeName()] = append(out[p.GetSpec().GetNodeName()], p)
	}
	return out
}

// readyOn reports whether exactly n pods of app run, all Ready, none
// being deleted, all on node.
func (e *cpEnv) readyOn(app, node string, n int) bool {
	byNode := e.podsByNode(app)
	if len(byNode) != 1 || len(byNode[node]) != n {
		return false
	}
	for _, p := range byNode[node] {
		if p.GetMetadata().GetDeletionTimestamp() != "" || !podIsReady(p) {
			return false
		}
	}
	return true
}

func podIsReady(p *apiv1.Pod) bool {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}

const drainWorkloads = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: a, image: busybox}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: w, image: nginx}]}
`

// startOnHollow0 applies the workloads with hollow-1 cordoned, so both of
// web's pods run on hollow-0, then uncordons hollow-1.
func (e *cpEnv) startOnHollow0(extra string) {
	e.t.Helper()
	e.mustCtl("", "cordon", "hollow-1")
	e.mustCtl(drainWorkloads+extra, "apply", "-f", "-")
	testutil.WaitFor(e.t, 30*time.Second, "web's 2 pods Ready on hollow-0", func() bool { return e.readyOn("web", "hollow-0", 2) })
	testutil.WaitFor(e.t, 30*time.Second, "a DaemonSet pod on each node", func() bool {
		byNode := e.podsByNode("agent")
		return len(byNode["hollow-0"]) == 1 && len(byNode["hollow-1"]) == 1
	})
}

// drain moves a Deployment's pods off a node and leaves its DaemonSet pods;
// without --ignore-daemonsets it refuses, naming them.
func TestDrainMovesDeploymentPodsAndLeavesDaemonSets(t *testing.T) {
	e := newCPEnv(t, 2)
	e.startOnHollow0("")
	if out := e.mustCtl("", "uncordon", "hollow-1"); out != "node/hollow-1 uncordoned\n" {
		t.Fatalf("uncordon: %q", out)
	}

	_, errs, code := e.ctl("", "drain", "hollow-0")
	if code == 0 || !strings.Contains(errs, "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/agent-") {
		t.Fatalf("drain without --ignore-daemonsets: exit %d, %s", code, errs)
	}
	out, errs, code := e.ctl("", "drain", "hollow-0", "--ignore-daemonsets", "--eviction-retry-interval", "200ms", "--timeout", "60s")
	if code != 0 {
		t.Fatalf("drain: exit %d: %s%s", code, out, errs)
	}
	for _, want := range []string{"node/hollow-0 already cordoned", "evicting pod default/web-", "evicted", "node/hollow-0 drained"} {
		if !strings.Contains(out, want) {
			t.Errorf("drain output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "Warning: ignoring DaemonSet-managed Pods: default/agent-") {
		t.Errorf("drain stderr lacks the DaemonSet warning: %s", errs)
	}
	testutil.WaitFor(t, 30*time.Second, "web's 2 pods Ready on hollow-1", func() bool { return e.readyOn("web", "hollow-1", 2) })
	if byNode := e.podsByNode("agent"); len(byNode["hollow-0"]) != 1 || byNode["hollow-0"][0].GetMetadata().GetDeletionTimestamp() != "" {
		t.Fatalf("the DaemonSet pod on hollow-0 was touched: %v", byNode)
	}
	n, err := client.Get[*apiv1.Node](e.ctx, e.cl, "", "hollow-0")
	if err != nil || !n.GetSpec().GetUnschedulable() {
		t.Fatalf("hollow-0 after drain: unschedulable=%v err=%v", n.GetSpec().GetUnschedulable(), err)
	}
}

// A drain is held by a PodDisruptionBudget until the evicted pod's
// replacement is Ready: with nowhere to put the replacement it times out
// having evicted one pod of two; once a node takes the replacement, the
// drain completes.
func TestDrainBlockedByBudgetUntilReplacementReady(t *testing.T) {
	e := newCPEnv(t, 2)
	e.startOnHollow0(`---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
`)
	testutil.WaitFor(t, 20*time.Second, "budget web allows 1 disruption", func() bool {
		pdb, err := client.Get[*apiv1.PodDisruptionBudget](e.ctx, e.cl, "default", "web")
		return err == nil && pdb.GetStatus().GetDisruptionsAllowed() == 1 && pdb.GetStatus().GetCurrentHealthy() == 2
	})
	if out := e.mustCtl("", "get", "pdb", "web"); !strings.Contains(out, "MIN AVAILABLE   MAX UNAVAILABLE   ALLOWED DISRUPTIONS") || !strings.Contains(out, "web    1               N/A               1") {
		t.Fatalf("get pdb:\n%s", out)
	}
	// hollow-1 stays cordoned: the replacement cannot run anywhere.
	out, errs, code := e.ctl("", "drain", "hollow-0", "--ignore-daemonsets", "--eviction-retry-interval", "200ms", "--timeout", "4s")
	if code == 0 {
		t.Fatalf("drain with the budget spent and no room for a replacement succeeded: %s", out)
	}
	if !strings.Contains(errs, "disruption budget web") || !strings.Contains(errs, "global timeout reached") {
		t.Fatalf("drain error lacks the budget refusal and timeout: %s", errs)
	}
	if pods := e.podsByNode("web")["hollow-0"]; countLive(pods) != 1 {
		t.Fatalf("%d live web pods left on hollow-0, want 1 (one evicted, one held by the budget)", countLive(pods))
	}

	e.mustCtl("", "uncordon", "hollow-1")
	out, errs, code = e.ctl("", "drain", "hollow-0", "--ignore-daemonsets", "--eviction-retry-interval", "200ms", "--timeout", "60s")
	if code != 0 {
		t.Fatalf("drain after uncordoning hollow-1: exit %d: %s%s", code, out, errs)
	}
	testutil.WaitFor(t, 30*time.Second, "web's 2 pods Ready on hollow-1", func() bool { return e.readyOn("web", "hollow-1", 2) })
}

func countLive(pods []*apiv1.Pod) int {
	n := 0
	for _, p := range pods {
		if p.GetMetadata().GetDeletionTimestamp() == "" {
			n++
		}
	}
	return n
}

// A viewer may not cordon, drain or evict; the node stays schedulable.
func TestDrainRefusedForViewer(t *testing.T) {
	e := newCPEnv(t, 1)
	viewer := e.configFor("user:viewer-vic")
	for _, args := range [][]string{{"cordon", "hollow-0"}, {"drain", "hollow-0", "--force"}} {
		_, errs, code := e.ctlAs(viewer, "", args...)
		if code == 0 || !strings.Contains(errs, "no RBAC rule allows it") {
			t.Errorf("viewer %v: exit %d: %s", args, code, errs)
		}
	}
	n, err := client.Get[*apiv1.Node](e.ctx, e.cl, "", "hollow-0")
	if err != nil || n.GetSpec().GetUnschedulable() {
		t.Fatalf("hollow-0 after the viewer's attempts: unschedulable=%v err=%v", n.GetSpec().GetUnschedulable(), err)
	}
}
