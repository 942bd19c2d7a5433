package inclusterhost

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/hostlab"
	"github.com/skiffhq/skiff/integration/testutil"
)

const manifest = `apiVersion: v1
kind: Namespace
metadata:
  name: ic-a
---
apiVersion: v1
kind: Namespace
metadata:
  name: ic-b
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: ic-a
  labels:
    app: client
spec:
  containers:
    - name: main
      image: REGISTRY/skiff/hello:1
      command: ["/bin/sh", "-c", "exec sleep 3600"]
      volumeMounts:
        - name: ctl
          mountPath: /usr/local/bin/ctl
          readOnly: true
  volumes:
    - name: ctl
      hostPath:
        path: CTL
        type: File
`

const viewBinding = `apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: default-view
  namespace: ic-a
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: view
subjects:
  - kind: ServiceAccount
    name: default
    namespace: ic-a
`

// endpointIPs reads the addresses of Endpoints default/kubernetes.
func endpointIPs(c *hostlab.Cluster) ([]string, int, error) {
	out, err := c.Ctl("get", "endpoints", "kubernetes", "-n", "default", "-o", "json")
	if err != nil {
		return nil, 0, err
	}
	var ep struct {
		Subsets []struct {
			Addresses []struct {
				IP string `json:"ip"`
			} `json:"addresses"`
			Ports []struct {
				Name string `json:"name"`
				Port int    `json:"port"`
			} `json:"ports"`
		} `json:"subsets"`
	}
	if err := json.Unmarshal([]byte(out), &ep); err != nil {
		return nil, 0, err
	}
	var ips []string
	port := 0
	for _, s := range ep.Subsets {
		for _, a := range s.Addresses {
			ips = append(ips, a.IP)
		}
		for _, p := range s.Ports {
			if p.Name == "https" {
				port = p.Port
			}
		}
	}
	slices.Sort(ips)
	return ips, port, nil
}

func TestPodCallsTheAPIWithItsServiceAccount(t *testing.T) {
	lab := hostlab.ForTest(t)
	dir := t.TempDir()
	ctlBin, regBin, err := hostlab.Build(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// ctl for the pod: linked statically (the image has no C library;
	// runc's nsenter needs cgo, so not CGO_ENABLED=0), same source.
	podCtl := filepath.Join(dir, "ctl-static")
	build := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", "-linkmode external -extldflags -static",
		"-o", podCtl, "github.com/skiffhq/skiff/cmd/ctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static ctl: %v\n%s", err, b)
	}
	registry, err := lab.StartRegistry(regBin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := hostlab.NewCluster(lab, ctlBin, registry, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	controlIPs := func() []string {
		var ips []string
		for _, h := range c.Controls {
			ips = append(ips, h.IP.String())
		}
		slices.Sort(ips)
		return ips
	}

	// The kubernetes Service and its Endpoints: every control node.
	testutil.WaitFor(t, 60*time.Second, "Service default/kubernetes at 10.96.0.1", func() bool {
		s, err := c.Service("default", "kubernetes")
		return err == nil && s.Spec.ClusterIP == "10.96.0.1"
	})
	var ips []string
	var port int
	testutil.WaitFor(t, 60*time.Second, "Endpoints default/kubernetes = the 3 control nodes", func() bool {
		ips, port, _ = endpointIPs(c)
		return slices.Equal(ips, controlIPs()) && port > 0
	})
	t.Logf("kubernetes endpoints %v port %d", ips, port)

	var applyErr error
	m := strings.NewReplacer("REGISTRY", registry, "CTL", podCtl).Replace(manifest)
	if !testutil.Eventually(30*time.Second, func() bool {
		_, applyErr = c.Apply(m)
		return applyErr == nil
	}) {
		t.Fatalf("apply: %v", applyErr)
	}
	testutil.WaitFor(t, 120*time.Second, "the client pod running", func() bool {
		ps, err := c.Pods("ic-a", "app=client")
		return err == nil && len(ps) == 1 && ps[0].Ready()
	})
	inPod := func(argv ...string) (string, error) {
		return c.Ctl(append([]string{"exec", "-n", "ic-a", "client", "--"}, argv...)...)
	}
	// The mounted account: namespace, CA, a token; the environment.
	out, err := inPod("sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; "+
		"grep -c 'BEGIN CERTIFICATE' /var/run/secrets/kubernetes.io/serviceaccount/ca.crt; "+
		"cut -c1-3 /var/run/secrets/kubernetes.io/serviceaccount/token; echo; echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT")
	if err != nil {
		t.Fatalf("read the service account files: %v %q", err, out)
	}
	lines := strings.Fields(out)
	if len(lines) != 4 || lines[0] != "ic-a" || lines[1] == "0" || lines[2] != "eyJ" || lines[3] != "10.96.0.1:443" {
		t.Fatalf("service account files and environment: %q, want ic-a, ≥1 certificate, a JWT, 10.96.0.1:443", out)
	}

	// ctl in the pod: no config file, so the mounted account, through
	// 10.96.0.1:443 (the pod's own network namespace) with the server
	// certificate verified against ca.crt for that address.
	// Before any binding: refused.
	out, err = inPod("/usr/local/bin/ctl", "get", "pods")
	if err == nil || !strings.Contains(errText(err), "system:serviceaccount:ic-a:default") {
		t.Fatalf("ctl get pods in the pod before a RoleBinding: %v %q, want refused for system:serviceaccount:ic-a:default", err, out)
	}
	t.Logf("before the RoleBinding: %s", firstLine(errText(err)))
	if _, err := c.Apply(viewBinding); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "ctl get pods in the pod to be allowed after the RoleBinding", func() bool {
		out, err = inPod("/usr/local/bin/ctl", "get", "pods")
		return err == nil && strings.Contains(out, "client")
	})
	t.Logf("after the RoleBinding:\n%s", out)
	out, err = inPod("/usr/local/bin/ctl", "get", "pods", "-n", "ic-b")
	if err == nil || !strings.Contains(errText(err), "system:serviceaccount:ic-a:default") {
		t.Fatalf("ctl get pods -n ic-b in the pod: %v %q, want refused", err, out)
	}
	out, err = inPod("/usr/local/bin/ctl", "delete", "pod", "client")
	if err == nil || !strings.Contains(errText(err), "may not delete") {
		t.Fatalf("ctl delete pod with view: %v %q, want refused", err, out)
	}

	// A control node that joins shows up in the Endpoints.
	if _, err := c.AddControl("c4"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "Endpoints default/kubernetes to list c4", func() bool {
		ips, _, _ = endpointIPs(c)
		return slices.Equal(ips, controlIPs())
	})
	t.Logf("after c4 joined: %v", ips)
	// And the pod still reaches the API through whichever one IPVS picks.
	for i := 0; i < 4; i++ {
		if out, err := inPod("/usr/local/bin/ctl", "get", "pods"); err != nil {
			t.Fatalf("call %d after c4 joined: %v %q", i, err, out)
		}
	}
}

func errText(err error) string {
	if ee, ok := err.(*hostlab.ExecError); ok {
		return ee.Error() + " " + ee.Stderr
	}
	return fmt.Sprint(err)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
