package cli_test

import (
	"strings"
	"testing"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestTopNodesAndPods: `ctl top` prints the agents' NodeMetrics as
// kubectl top does (cores in millicores, memory in Mi, percentages of the
// Node's allocatable), per container with --containers, across namespaces
// with -A, sorted with --sort-by; a node whose sample is stale is left
// out. (integration/monitoring shows the numbers following a real load.)
func TestTopNodesAndPods(t *testing.T) {
	e := newEnv(t, 1)
	cl, ctx := e.apiClient()
	now := time.Now().UTC()
	for _, n := range []struct {
		name string
		at   time.Time
	}{{"w1", now}, {"w2", now}, {"w-stale", now.Add(-10 * time.Minute)}} {
		node := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: n.name}}
		created, err := client.Create(ctx, cl, node)
		if err != nil {
			t.Fatal(err)
		}
		created.Status = &apiv1.NodeStatus{Allocatable: map[string]string{"cpu": "2", "memory": "4Gi"}}
		if _, err := client.UpdateStatus(ctx, cl, created); err != nil {
			t.Fatal(err)
		}
		m := &apiv1.NodeMetrics{Metadata: &apiv1.ObjectMeta{Name: n.name}, Timestamp: n.at.Format(time.RFC3339), Window: "15s",
			Usage: map[string]string{"cpu": "500m", "memory": "1Gi"}}
		switch n.name {
		case "w1":
			m.Usage["cpu"] = "1500m"
			m.Pods = []*apiv1.PodUsage{
				{Namespace: "default", Name: "web-1", Uid: "u1", Usage: map[string]string{"cpu": "250m", "memory": "64Mi"},
					Containers: []*apiv1.ContainerMetrics{
						{Name: "web", Usage: map[string]string{"cpu": "200m", "memory": "48Mi"}},
						{Name: "sidecar", Usage: map[string]string{"cpu": "50m", "memory": "16Mi"}}}},
				{Namespace: "shop", Name: "cart-1", Uid: "u2", Usage: map[string]string{"cpu": "10m", "memory": "128Mi"},
					Containers: []*apiv1.ContainerMetrics{{Name: "cart", Usage: map[string]string{"cpu": "10m", "memory": "128Mi"}}}},
			}
		case "w-stale":
			m.Pods = []*apiv1.PodUsage{{Namespace: "default", Name: "ghost", Usage: map[string]string{"cpu": "1", "memory": "1Mi"}}}
		}
		if _, err := client.Create(ctx, cl, m); err != nil {
			t.Fatal(err)
		}
	}
	check := func(got string, want ...string) {
		t.Helper()
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
		if strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
		}
	}
	check(e.mustCtl("top", "nodes"),
		"NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)",
		"w1 1500m 75% 1024Mi 25%",
		"w2 500m 25% 1024Mi 25%")
	check(e.mustCtl("top", "node", "w2", "--no-headers"), "w2 500m 25% 1024Mi 25%")
	check(e.mustCtl("top", "pods"),
		"NAME CPU(cores) MEMORY(bytes)",
		"web-1 250m 64Mi")
	check(e.mustCtl("top", "pods", "--containers"),
		"POD NAME CPU(cores) MEMORY(bytes)",
		"web-1 web 200m 48Mi",
		"web-1 sidecar 50m 16Mi")
	check(e.mustCtl("top", "pods", "-A", "--sort-by", "memory"),
		"NAMESPACE NAME CPU(cores) MEMORY(bytes)",
		"shop cart-1 10m 128Mi",
		"default web-1 250m 64Mi")
	if _, errs, code := e.ctl("", "top", "pods", "--sort-by", "disk"); code == 0 || !strings.Contains(errs, `--sort-by "disk": want cpu or memory`) {
		t.Errorf("--sort-by disk: exit %d %q", code, errs)
	}
	if _, errs, code := e.ctl("", "top", "node", "w-stale"); code == 0 || !strings.Contains(errs, "metrics not available yet") {
		t.Errorf("stale node: exit %d %q", code, errs)
	}
}

// TestDaemonFlagsRefuseBadValues: --log-format and --metrics-port name the
// value and what is allowed before anything starts.
func TestDaemonFlagsRefuseBadValues(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"init", "--data-dir", dir, "--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"init", "--data-dir", dir, "--log-level", "loud"}, `--log-level loud: want debug, info, warn or error`},
		{[]string{"init", "--data-dir", dir, "--metrics-port", "70000"}, `--metrics-port 70000: want 1-65535, or -1 for none`},
		{[]string{"agent", "--log-format", "yaml"}, `--log-format "yaml": want text or json`},
	} {
		var e env
		e.t = t
		_, errs, code := e.ctl("", c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("ctl %s: exit %d %q, want %q", strings.Join(c.args, " "), code, errs, c.want)
		}
	}
}
