package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/cmd/ctl/internal/cli"
	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// examplesDir is the repository's examples/ folder.
const examplesDir = "../../../../examples"

type env struct {
	t      *testing.T
	c      *apitest.Cluster
	config string
}

func newEnv(t *testing.T, nodes int) *env {
	t.Helper()
	c := apitest.Start(t, nodes, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	path, err := c.WriteClientConfig(t.TempDir(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, c: c, config: path}
}

// apiClient is an admin API client and a 20 s context, both ended with the test.
func (e *env) apiClient() (*client.Client, context.Context) {
	e.t.Helper()
	cl, err := e.c.Client()
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return cl, ctx
}

// ctl runs one command line in-process, as the binary would.
func (e *env) ctl(stdin string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	var out, errb bytes.Buffer
	code = cli.Main(append([]string{"--config", e.config}, args...), cli.Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return out.String(), errb.String(), code
}

func (e *env) mustCtl(args ...string) string {
	e.t.Helper()
	out, errs, code := e.ctl("", args...)
	if code != 0 {
		e.t.Fatalf("ctl %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// TestExamplesApplyAndRoundTrip: the example manifests (examples/) apply
// unchanged through the CLI, re-apply as unchanged, and every field they set
// comes back the same from `get -o yaml` (and -o json).
func TestExamplesApplyAndRoundTrip(t *testing.T) {
	e := newEnv(t, 1)
	out := e.mustCtl("apply", "-f", examplesDir)
	want := []string{"namespace/storefront created", "deployment.apps/nginx created", "replicationcontroller/httpd created",
		"service/nginx created", "service/nginx-public created"}
	if got := strings.Split(strings.TrimSpace(out), "\n"); !reflect.DeepEqual(got, want) {
		t.Fatalf("apply output:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	out = e.mustCtl("apply", "-f", examplesDir)
	if strings.Count(out, " unchanged") != 5 {
		t.Fatalf("re-apply should leave all 5 unchanged:\n%s", out)
	}
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if len(files) < 4 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			var m map[string]any
			if err := sigsyaml.Unmarshal([]byte(doc), &m); err != nil || m == nil {
				continue
			}
			md := m["metadata"].(map[string]any)
			args := []string{"get", m["kind"].(string), md["name"].(string)}
			if ns, ok := md["namespace"].(string); ok {
				args = append(args, "-n", ns)
			}
			for _, format := range []string{"yaml", "json"} {
				got := e.mustCtl(append(args, "-o", format)...)
				var back map[string]any
				if err := sigsyaml.Unmarshal([]byte(got), &back); err != nil {
					t.Fatalf("%s -o %s output does not parse: %v\n%s", f, format, err, got)
				}
				if path, ok := subset(m, back, ""); !ok {
					t.Errorf("%s (%s %s): field %s differs after round trip:\n%s", f, m["kind"], md["name"], path, got)
				}
			}
		}
	}
	// Table and name output.
	if out := e.mustCtl("get", "deploy", "-A"); !strings.Contains(out, "storefront ") || !strings.Contains(out, "nginx ") {
		t.Fatalf("get deploy -A:\n%s", out)
	}
	if out := e.mustCtl("get", "svc", "-n", "storefront", "-o", "name"); out != "service/nginx\nservice/nginx-public\n" {
		t.Fatalf("get -o name:\n%q", out)
	}
}

// subset reports whether every field of want is in got with the same
// value, returning the first path that is not.
func subset(want, got any, path string) (string, bool) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path, false
		}
		for k, v := range w {
			if p, ok := subset(v, g[k], path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path, false
		}
		for i := range w {
			if p, ok := subset(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return p, false
			}
		}
		return "", true
	}
	wj, _ := json.Marshal(want)
	gj, _ := json.Marshal(got)
	return path, bytes.Equal(wj, gj)
}

// TestApplyReportsEachObject: a bad document does not stop the good ones;
// each object is reported on its own, the failures with file:line, the exit
// status is 1 and the error names what was applied. delete -f likewise.
func TestApplyReportsEachObject(t *testing.T) {
	e := newEnv(t, 1)
	dir := t.TempDir()
	good := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n"
	bad := "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: old\nspec: {}\n---\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: also-fine\n---\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ghost\n  namespace: nowhere\n"
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(good), 0o600)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(bad), 0o600)
	out, errs, code := e.ctl("", "apply", "-f", dir)
	if code != 1 || !strings.Contains(errs, "b.yaml:1") || !strings.Contains(errs, `use apiVersion "apps/v1"`) {
		t.Fatalf("retired apiVersion: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "b.yaml:12: configmap/ghost: ") || !strings.Contains(errs, "nowhere") {
		t.Fatalf("the object in a missing namespace is not reported with file:line: %s", errs)
	}
	if !strings.Contains(errs, "2 of 4 objects failed") || !strings.Contains(errs, "2 applied: configmap/fine, configmap/also-fine") {
		t.Fatalf("the error does not say what was applied: %s", errs)
	}
	if out != "configmap/fine created\nconfigmap/also-fine created\n" {
		t.Fatalf("apply output: %q", out)
	}
	e.mustCtl("get", "cm", "fine")
	e.mustCtl("get", "cm", "also-fine")
	out, errs, code = e.ctl("", "delete", "-f", dir)
	if code != 1 || !strings.Contains(errs, "configmap/ghost") || !strings.Contains(errs, "2 deleted") {
		t.Fatalf("delete -f: exit %d: %s", code, errs)
	}
	if out != "configmap \"also-fine\" deleted\nconfigmap \"fine\" deleted\n" {
		t.Fatalf("delete -f output: %q", out)
	}
	if _, errs, _ := e.ctl("", "get", "cm", "fine"); !strings.Contains(errs, "not found") {
		t.Fatalf("delete -f left an object: %s", errs)
	}
	// stdin, and a field error with its line.
	_, errs, code = e.ctl("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: x\n    ports:\n    - containerPort: 70000\n", "apply", "-f", "-")
	if code == 0 || !strings.Contains(errs, "-:10: spec.containers[0].ports[0].containerPort: 70000 must be 1-65535") || !strings.Contains(errs, "none was applied") {
		t.Fatalf("field error: %s", errs)
	}
	// A document with two problems is one object that failed.
	twoBad := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: x\n    ports:\n    - containerPort: 70000\n    - containerPort: 70001\n---\n" + good
	_, errs, code = e.ctl(twoBad, "apply", "-f", "-")
	if code != 1 || strings.Count(errs, "must be 1-65535") != 2 || !strings.Contains(errs, "1 of 2 objects failed") {
		t.Fatalf("two problems of one document: exit %d: %s", code, errs)
	}
}

// TestReapplyKeepsAllocatedFields: a NodePort Service without a nodePort
// re-applies as unchanged and keeps its allocated port and clusterIP; a
// changed manifest says configured and still keeps them; --dry-run=server
// validates without storing.
func TestReapplyKeepsAllocatedFields(t *testing.T) {
	e := newEnv(t, 1)
	svc := "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n"
	if out, errs, code := e.ctl(svc, "apply", "-f", "-", "--dry-run=server"); code != 0 || out != "service/web created (server dry run)\n" {
		t.Fatalf("dry run: exit %d %q %s", code, out, errs)
	}
	if _, errs, _ := e.ctl("", "get", "svc", "web"); !strings.Contains(errs, "not found") {
		t.Fatalf("a server dry run stored the object: %s", errs)
	}
	if out, errs, code := e.ctl(svc, "apply", "-f", "-"); code != 0 || out != "service/web created\n" {
		t.Fatalf("apply: exit %d %q %s", code, out, errs)
	}
	cl, ctx := e.apiClient()
	// The serviceip controller is not running here: set what it would.
	got, err := client.Get[*apiv1.Service](ctx, cl, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	got.Spec.ClusterIP = "10.96.0.9"
	got.Spec.Ports[0].NodePort = 30080
	if _, err := client.Update(ctx, cl, got); err != nil {
		t.Fatal(err)
	}
	out, errs, code := e.ctl(svc, "apply", "-f", "-")
	if code != 0 || out != "service/web unchanged\n" {
		t.Fatalf("re-apply: exit %d %q %s", code, out, errs)
	}
	out, errs, code = e.ctl(strings.Replace(svc, "8080", "8081", 1), "apply", "-f", "-", "--dry-run=server")
	if code != 0 || out != "service/web configured (server dry run)\n" {
		t.Fatalf("changed apply, dry run: exit %d %q %s", code, out, errs)
	}
	if got, err := client.Get[*apiv1.Service](ctx, cl, "default", "web"); err != nil || got.GetSpec().GetPorts()[0].GetTargetPort() != "8080" {
		t.Fatalf("a server dry run changed the stored object: %v %v", got.GetSpec(), err)
	}
	if _, errs, code := e.ctl(svc, "apply", "-f", "-", "--dry-run=client"); code == 0 || !strings.Contains(errs, "must be none or server") {
		t.Fatalf("--dry-run=client: exit %d %s", code, errs)
	}
	out, errs, code = e.ctl(strings.Replace(svc, "8080", "8081", 1), "apply", "-f", "-")
	if code != 0 || out != "service/web configured\n" {
		t.Fatalf("changed apply: exit %d %q %s", code, out, errs)
	}
	got, err = client.Get[*apiv1.Service](ctx, cl, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSpec().GetClusterIP() != "10.96.0.9" || got.GetSpec().GetPorts()[0].GetNodePort() != 30080 || got.GetSpec().GetPorts()[0].GetTargetPort() != "8081" {
		t.Fatalf("apply lost an allocated field or kept the old target: %v", got.GetSpec())
	}
}

func TestScaleDescribeDeleteCreateNamespace(t *testing.T) {
	e := newEnv(t, 1)
	if out := e.mustCtl("create", "namespace", "storefront"); out != "namespace/storefront created\n" {
		t.Fatalf("create namespace: %q", out)
	}
	e.mustCtl("apply", "-f", filepath.Join(examplesDir, "nginx-deployment.yaml"))
	if out := e.mustCtl("scale", "deployment", "nginx", "-n", "storefront", "--replicas=2"); out != "deployment.apps/nginx scaled\n" {
		t.Fatalf("scale: %q", out)
	}
	if _, errs, code := e.ctl("", "scale", "deployment", "nginx", "-n", "storefront", "--replicas=3", "--current-replicas=5"); code == 0 || !strings.Contains(errs, "expected 5 replicas") {
		t.Fatalf("conditional scale: %s", errs)
	}
	cl, ctx := e.apiClient()
	d, err := client.Get[*apiv1.Deployment](ctx, cl, "storefront", "nginx")
	if err != nil || d.GetSpec().GetReplicas() != 2 {
		t.Fatalf("replicas after scale: %v %v", d.GetSpec().GetReplicas(), err)
	}
	if err := client.NewRecorder(cl, "deployment-controller", "").Event(ctx, d, client.EventNormal, "ScalingReplicaSet", "Scaled up replica set nginx-1 to 2"); err != nil {
		t.Fatal(err)
	}
	out := e.mustCtl("describe", "deploy", "nginx", "-n", "storefront")
	for _, want := range []string{"Name:        nginx", "Namespace:   storefront", "replicas: 2", "Events:", "ScalingReplicaSet", "Scaled up replica set nginx-1 to 2"} {
		if !strings.Contains(out, want) {
			t.Fatalf("describe lacks %q:\n%s", want, out)
		}
	}
	e.mustCtl("apply", "-f", filepath.Join(examplesDir, "services.yaml"))
	if out := e.mustCtl("delete", "svc", "-n", "storefront", "-l", "app!=nothing"); out != "service \"nginx\" deleted\nservice \"nginx-public\" deleted\n" {
		t.Fatalf("delete -l: %q", out)
	}
	if out := e.mustCtl("delete", "deploy", "nginx", "-n", "storefront", "--cascade=foreground"); !strings.Contains(out, `deployment.apps "nginx" deleted`) {
		t.Fatalf("delete: %q", out)
	}
	if out := e.mustCtl("version"); !strings.Contains(out, "Server Version: ") {
		t.Fatalf("version: %q", out)
	}
	if out := e.mustCtl("completion", "bash"); !strings.Contains(out, "__start_ctl") {
		t.Fatalf("bash completion script missing")
	}
}

// TestUnreachableServerIsOneLine: no server listening, and a follower cut
// off from its quorum, both give a single "error: …" line.
func TestUnreachableServerIsOneLine(t *testing.T) {
	e := newEnv(t, 3)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	_, errs, code := e.ctl("", "get", "pods", "--server", dead, "--request-timeout", "10s")
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "error: API server unavailable") || !strings.Contains(errs, "connection refused") {
		t.Fatalf("unreachable server: exit %d, stderr %q", code, errs)
	}
	f, err := e.c.Follower(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range e.c.Servers() {
		if s != f {
			e.c.StopNode(s)
		}
	}
	start := time.Now()
	_, errs, code = e.ctl("", "get", "pods", "--server", f.Addr, "--request-timeout", "10s")
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "error: ") {
		t.Fatalf("follower without quorum: exit %d, stderr %q", code, errs)
	}
	t.Logf("follower without quorum answered in %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(errs))
}

// describe node shows the heartbeat Lease (the status is written rarely).
func TestDescribeNodeShowsLease(t *testing.T) {
	e := newEnv(t, 1)
	cl, ctx := e.apiClient()
	n, err := client.Create(ctx, cl, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w1"}})
	if err != nil {
		t.Fatal(err)
	}
	if out := e.mustCtl("describe", "node", "w1"); !strings.Contains(out, "Lease:") || !strings.Contains(out, "<none>") {
		t.Fatalf("describe of a node without a lease:\n%s", out)
	}
	lease := client.NewNodeLease(cl, "w1", 6*time.Second)
	lease.SetOwner(n)
	if err := lease.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := client.Get[*apiv1.Lease](ctx, cl, apiv1.NodeLeaseNamespace, "w1")
	if err != nil {
		t.Fatal(err)
	}
	out := e.mustCtl("describe", "node", "w1")
	if want := "holder w1, renewed " + l.GetSpec().GetRenewTime(); !strings.Contains(out, want) {
		t.Fatalf("describe lacks %q:\n%s", want, out)
	}
}
