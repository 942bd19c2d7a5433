package monitoring_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/controlplane/usage"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/logkey"
)

// The whole binary runs in a fresh network namespace with only loopback
// (runtimetest.Main): the cluster, the registry, Prometheus and the pods'
// bridge all live there.
func TestMain(m *testing.M) { runtimetest.Main(m) }

func i32(v int32) *int32 { return &v }

// requirePrometheus is the Debian package's server (make deps installs
// it); the test skips only when it is absent.
func requirePrometheus(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (Debian package prometheus; `make deps` installs it)")
	}
	return p
}

// A real Prometheus scrapes a cluster of two control nodes (metrics ports,
// mutual TLS with the admin's certificate) and a worker (--metrics-addr):
// every target is up, and the agent's pod-start counter rises when a
// Deployment is scaled. The metrics ports refuse viewers, workers and
// clients without a certificate; every exposed family passes promlint and
// is named skiff_<part>_<what> (or go_/process_); the agents' usage
// samples follow a container burning CPU; the worker's JSON log lines
// carry the shared keys.
func TestPrometheusScrapesTheCluster(t *testing.T) {
	runtimetest.RequireRoot(t)
	promBin := requirePrometheus(t)
	c := startCluster(t, 2)
	img := c.env.Registry.BusyboxImage(t, "busybox", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	testutil.WaitFor(t, 90*time.Second, "worker w1 Ready with its pod range", func() bool {
		n, err := client.Get[*apiv1.Node](ctx, c.admin, "", "w1")
		if err != nil || n.GetSpec().GetPodCIDR() == "" {
			return false
		}
		for _, cond := range n.GetStatus().GetConditions() {
			if cond.GetType() == "Ready" && cond.GetStatus() == "True" {
				return true
			}
		}
		return false
	})

	t.Run("MetricsPortRefusesIdentitiesWithoutThePermission", func(t *testing.T) {
		port := c.controls[0].metricsPort
		admin := c.issue(t, pki.AdminIdentity())
		if code, body, err := c.scrape(t, port, &admin); err != nil || code != 200 || !strings.Contains(body, "skiff_api_requests_total") {
			t.Fatalf("admin scrape: %d %v %.200s", code, err, body)
		}
		ctlID, _ := pki.ControlIdentity("c2")
		ctl := c.issue(t, ctlID)
		if code, _, err := c.scrape(t, port, &ctl); err != nil || code != 200 {
			t.Errorf("control node c2 scrape: %d %v", code, err)
		}
		viewerID, _ := pki.UserIdentity("bob", pki.RoleViewer)
		worker, _ := pki.NodeIdentity("w1")
		for _, id := range []pki.Identity{viewerID, worker} {
			cert := c.issue(t, id)
			code, body, err := c.scrape(t, port, &cert)
			if err != nil || code != 403 || !strings.Contains(body, "forbidden") {
				t.Errorf("%s: got %d %q %v, want 403 forbidden", id, code, body, err)
			}
		}
		if code, _, err := c.scrape(t, port, nil); err == nil {
			t.Errorf("a client without a certificate got %d", code)
		}
		// A non-member control identity is refused at the handshake, as on the API port.
		strangerID, _ := pki.ControlIdentity("c9")
		stranger := c.issue(t, strangerID)
		if code, _, err := c.scrape(t, port, &stranger); err == nil {
			t.Errorf("a control identity outside the cluster got %d", code)
		}
	})

	prom := startPrometheus(t, promBin, c)
	t.Run("EveryTargetUp", func(t *testing.T) {
		testutil.WaitFor(t, 60*time.Second, "3 targets up in Prometheus", func() bool {
			res, err := prom.query(`up`)
			if err != nil || len(res) != 3 {
				return false
			}
			for _, r := range res {
				if r.value != 1 {
					return false
				}
			}
			return true
		})
	})

	t.Run("PodStartsRiseWhenADeploymentScales", func(t *testing.T) {
		labels := map[string]string{"app": "web"}
		d := &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: &apiv1.DeploymentSpec{Replicas: i32(1), Selector: &apiv1.LabelSelector{MatchLabels: labels},
				Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: labels},
					Spec: &apiv1.PodSpec{TerminationGracePeriodSeconds: client.Int64(1),
						Containers: []*apiv1.Container{{Name: "web", Image: img, Command: []string{"sleep", "3600"}}}}}}}
		if _, err := client.Create(ctx, c.admin, d); err != nil {
			t.Fatal(err)
		}
		waitRunning(t, ctx, c.admin, "app=web", 1)
		starts := `sum(skiff_agent_pod_starts_total{result="started"})`
		var before float64
		testutil.WaitFor(t, 30*time.Second, "Prometheus to see the first start", func() bool {
			res, err := prom.query(starts)
			if err != nil || len(res) != 1 {
				return false
			}
			before = res[0].value
			return before >= 1
		})
		if _, err := client.Patch[*apiv1.Deployment](ctx, c.admin, "default", "web", []byte(`{"spec":{"replicas":3}}`)); err != nil {
			t.Fatal(err)
		}
		waitRunning(t, ctx, c.admin, "app=web", 3)
		testutil.WaitFor(t, 30*time.Second, "the pod-start counter to rise by 2 in Prometheus", func() bool {
			res, err := prom.query(starts)
			return err == nil && len(res) == 1 && res[0].value >= before+2
		})
		res, err := prom.query(`sum(skiff_agent_pod_start_seconds_count)`)
		if err != nil || len(res) != 1 || res[0].value < 3 {
			t.Errorf("pod start latency observations: %v %v", res, err)
		}
		if res, err := prom.query(`histogram_quantile(0.5, sum by (le) (skiff_agent_pod_start_seconds_bucket))`); err == nil && len(res) == 1 {
			t.Logf("pod start (creation to Running) p50 ≤ %.2fs by Prometheus' estimate", res[0].value)
		}
	})

	t.Run("UsageFollowsABurningContainer", func(t *testing.T) {
		// Idle for its first seconds, then one busy loop: its CPU goes from
		// about nothing (0-1m) to up to a core — much less on a machine
		// whose two cores other work saturates, so 100m is the bar.
		pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "burner", Labels: map[string]string{"app": "burner"}},
			Spec: &apiv1.PodSpec{TerminationGracePeriodSeconds: client.Int64(1),
				Containers: []*apiv1.Container{{Name: "burn", Image: img, Command: []string{"sh", "-c", "sleep 6; while :; do :; done"}}}}}
		if _, err := client.Create(ctx, c.admin, pod); err != nil {
			t.Fatal(err)
		}
		burner := func() (usage.Pod, bool) {
			pods, err := usage.Pods(ctx, c.admin, "default")
			if err != nil {
				return usage.Pod{}, false
			}
			for _, p := range pods {
				if p.Name == "burner" {
					return p, true
				}
			}
			return usage.Pod{}, false
		}
		var idle usage.Pod
		testutil.WaitFor(t, 60*time.Second, "an idle usage sample of the burner", func() bool {
			p, ok := burner()
			idle = p
			return ok && p.MemoryBytes > 0 && len(p.Containers) == 1
		})
		// The first sample comes within two intervals (2 s) of the start,
		// inside the 6 s sleep.
		if idle.CPUMilli > 50 {
			t.Errorf("the sleeping burner uses %dm", idle.CPUMilli)
		}
		var busy usage.Pod
		if !testutil.Eventually(60*time.Second, func() bool {
			p, ok := burner()
			busy = p
			return ok && p.CPUMilli > 100
		}) {
			t.Fatalf("the burner's CPU did not pass 100m: idle sample %+v, last %+v", idle, busy)
		}
		nodes, err := usage.Nodes(ctx, c.admin)
		if err != nil || len(nodes) != 1 || nodes[0].Name != "w1" {
			t.Fatalf("node usage: %v %v", nodes, err)
		}
		if n := nodes[0]; n.CPUMilli < busy.CPUMilli/2 || n.MemoryBytes <= 0 || n.AllocatableCPUMilli <= 0 {
			t.Errorf("node w1 usage %+v while a container burns %dm", n, busy.CPUMilli)
		}
		t.Logf("burner: idle %dm %dKi, busy %dm; node %dm of %dm", idle.CPUMilli, idle.MemoryBytes>>10, busy.CPUMilli,
			nodes[0].CPUMilli, nodes[0].AllocatableCPUMilli)
		if _, _, err := c.admin.Delete(ctx, "Pod", "default", "burner", client.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, "the burner stopped and gone", func() bool {
			_, err := client.Get[*apiv1.Pod](ctx, c.admin, "default", "burner")
			return client.IsNotFound(err)
		})
	})

	// Last: a family appears once it has a sample.
	t.Run("EveryFamilyIsNamedAndLinted", func(t *testing.T) {
		admin := c.issue(t, pki.AdminIdentity())
		bodies := map[string]string{}
		for _, n := range c.controls {
			code, body, err := c.scrape(t, n.metricsPort, &admin)
			if err != nil || code != 200 {
				t.Fatalf("%s: %d %v", n.name, code, err)
			}
			bodies[n.name] = body
		}
		code, body, err := get("http://" + c.worker.metricsAddr + "/metrics")
		if err != nil || code != 200 {
			t.Fatalf("worker: %d %v", code, err)
		}
		bodies["w1"] = body
		for who, body := range bodies {
			problems, err := promlint.New(strings.NewReader(body)).Lint()
			if err != nil {
				t.Fatalf("%s: %v", who, err)
			}
			for _, p := range problems {
				t.Errorf("%s: promlint: %s: %s", who, p.Metric, p.Text)
			}
			for _, name := range families(body) {
				if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !metricName.MatchString(name) {
					t.Errorf("%s: %s is not skiff_<part>_<what>", who, name)
				}
			}
		}
		for _, want := range []string{"skiff_store_apply_seconds", "skiff_api_requests_total", "skiff_controller_reconcile_seconds",
			"skiff_controller_queue_depth", "skiff_scheduler_schedule_attempts_total", "go_goroutines", "process_resident_memory_bytes"} {
			if !strings.Contains(bodies["c1"]+bodies["c2"], "\n"+want) {
				t.Errorf("control nodes do not expose %s", want)
			}
		}
		for _, want := range []string{"skiff_agent_pod_starts_total", "skiff_agent_runtime_operation_seconds", "go_goroutines"} {
			if !strings.Contains(bodies["w1"], "# TYPE "+want) {
				t.Errorf("the worker does not expose %s", want)
			}
		}
	})

	t.Run("JSONLogLinesCarryTheSharedKeys", func(t *testing.T) {
		var line map[string]any
		sc := bufio.NewScanner(strings.NewReader(c.worker.log.String()))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
			}
			if m["msg"] == "pod started" {
				line = m
				break
			}
		}
		if line == nil {
			t.Fatal("no \"pod started\" line in the worker's JSON log")
		}
		for _, k := range []string{"time", "level", "msg", logkey.Node, logkey.Namespace, logkey.Pod, logkey.UID} {
			if _, ok := line[k]; !ok {
				t.Errorf("key %q missing from %v", k, line)
			}
		}
		if line[logkey.Node] != "w1" || line[logkey.Namespace] != "default" {
			t.Errorf("line %v", line)
		}
	})
}

var metricName = regexpMust(`^skiff_[a-z]+_[a-z0-9_]+$`)

// families lists the metric families of an exposition.
func families(body string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, "# TYPE "); ok {
			out = append(out, strings.Fields(rest)[0])
		}
	}
	return out
}

func waitRunning(t *testing.T, ctx context.Context, c *client.Client, selector string, n int) {
	t.Helper()
	testutil.WaitFor(t, 90*time.Second, fmt.Sprintf("%d pods %s Running", n, selector), func() bool {
		pods, _, err := client.List[*apiv1.Pod](ctx, c, client.ListOptions{Namespace: "default", LabelSelector: selector})
		if err != nil {
			return false
		}
		running := 0
		for _, p := range pods {
			if p.GetStatus().GetPhase() == "Running" && p.GetMetadata().GetDeletionTimestamp() == "" {
				running++
			}
		}
		return running == n
	})
}

type promServer struct{ addr string }

type sample struct {
	labels map[string]string
	value  float64
}

// startPrometheus runs the Debian prometheus with a scrape config for the
// cluster (1 s interval), on loopback.
func startPrometheus(t *testing.T, bin string, c *cluster) *promServer {
	t.Helper()
	dir := t.TempDir()
	ca, cert, key := c.adminPEM(t)
	for name, b := range map[string][]byte{"ca.crt": ca, "admin.crt": cert, "admin.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var controls []string
	for _, n := range c.controls {
		controls = append(controls, strconv.Quote("127.0.0.1:"+strconv.Itoa(n.metricsPort)))
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: skiff-control
    scheme: https
    tls_config:
      ca_file: %[1]s/ca.crt
      cert_file: %[1]s/admin.crt
      key_file: %[1]s/admin.key
    static_configs:
      - targets: [%[2]s]
  - job_name: skiff-worker
    static_configs:
      - targets: [%[3]q]
`, dir, strings.Join(controls, ", "), c.worker.metricsAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	p := &promServer{addr: addr}
	testutil.WaitFor(t, 30*time.Second, "prometheus ready", func() bool {
		code, _, err := get("http://" + addr + "/-/ready")
		return err == nil && code == 200
	})
	return p
}

// query runs an instant query through Prometheus' HTTP API.
func (p *promServer) query(q string) ([]sample, error) {
	code, body, err := get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("query %s: %d %s", q, code, body)
	}
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return nil, err
	}
	var out []sample
	for _, r := range resp.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("value %v: %w", r.Value[1], err)
		}
		out = append(out, sample{labels: r.Metric, value: v})
	}
	return out, nil
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }
