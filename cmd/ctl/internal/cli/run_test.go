package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// run + expose give a Service whose endpoints are the pod's: by pod, and
// by Deployment (port taken from its template) as a NodePort.
func TestRunAndExposeGiveServiceWithEndpoints(t *testing.T) {
	e := newCPEnv(t, 1)
	out := e.mustCtl("", "run", "web", "--image", "nginx", "--port", "80", "--env", "MODE=demo", "--restart", "Always", "--", "-g", "daemon off;")
	if out != "pod/web created\n" {
		t.Fatalf("run: %q", out)
	}
	pod, err := client.Get[*apiv1.Pod](e.ctx, e.cl, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	ctr := pod.GetSpec().GetContainers()[0]
	if pod.GetMetadata().GetLabels()["run"] != "web" || ctr.GetImage() != "nginx" || ctr.GetPorts()[0].GetContainerPort() != 80 ||
		ctr.GetEnv()[0].GetValue() != "demo" || strings.Join(ctr.GetArgs(), " ") != "-g daemon off;" {
		t.Fatalf("pod made by run: %v", pod)
	}
	if out := e.mustCtl("", "expose", "pod", "web", "--port", "8080", "--target-port", "80", "--name", "web-svc"); out != "service/web-svc exposed\n" {
		t.Fatalf("expose: %q", out)
	}
	testutil.WaitFor(t, 30*time.Second, "endpoints of web-svc hold the pod's IP on port 80", func() bool {
		p, err := client.Get[*apiv1.Pod](e.ctx, e.cl, "default", "web")
		if err != nil || p.GetStatus().GetPodIP() == "" {
			return false
		}
		ep, err := client.Get[*apiv1.Endpoints](e.ctx, e.cl, "default", "web-svc")
		if err != nil || len(ep.GetSubsets()) != 1 {
			return false
		}
		s := ep.GetSubsets()[0]
		return len(s.GetAddresses()) == 1 && s.GetAddresses()[0].GetIp() == p.GetStatus().GetPodIP() && s.GetPorts()[0].GetPort() == 80
	})

	e.mustCtl(`apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: a, image: api, ports: [{containerPort: 9000}]}]}
`, "apply", "-f", "-")
	e.mustCtl("", "expose", "deployment", "api", "--type", "NodePort")
	svc, err := client.Get[*apiv1.Service](e.ctx, e.cl, "default", "api")
	if err != nil {
		t.Fatal(err)
	}
	if svc.GetSpec().GetType() != "NodePort" || svc.GetSpec().GetPorts()[0].GetPort() != 9000 || svc.GetSpec().GetSelector()["app"] != "api" {
		t.Fatalf("service from expose deployment: %v", svc.GetSpec())
	}
	testutil.WaitFor(t, 30*time.Second, "endpoints of api hold both pods", func() bool {
		ep, err := client.Get[*apiv1.Endpoints](e.ctx, e.cl, "default", "api")
		return err == nil && len(ep.GetSubsets()) == 1 && len(ep.GetSubsets()[0].GetAddresses()) == 2
	})

	// A Service exposes again under another name, with its selector (a map, as a ReplicationController's).
	e.mustCtl("", "expose", "svc/web-svc", "--name", "web-alt", "--port", "9090")
	alt, err := client.Get[*apiv1.Service](e.ctx, e.cl, "default", "web-alt")
	if err != nil || alt.GetSpec().GetSelector()["run"] != "web" || alt.GetSpec().GetPorts()[0].GetPort() != 9090 {
		t.Fatalf("service from expose svc: %v, %v", alt.GetSpec(), err)
	}

	// --dry-run: client prints without asking the API, server validates without storing.
	out = e.mustCtl("", "run", "dry", "--image", "nginx", "--port", "80", "--expose", "--dry-run=client", "-o", "yaml")
	if !strings.Contains(out, "kind: Pod") || !strings.Contains(out, "image: nginx") || !strings.Contains(out, "---\napiVersion: v1\nkind: Service") {
		t.Fatalf("run --dry-run=client -o yaml:\n%s", out)
	}
	if out := e.mustCtl("", "run", "dry", "--image", "nginx", "--dry-run=server"); out != "pod/dry created (server dry run)\n" {
		t.Fatalf("run --dry-run=server: %q", out)
	}
	if _, errs, code := e.ctl("", "run", "dry", "--image", "nginx", "--restart", "Always", "--env", "=x", "--dry-run=server"); code == 0 || !strings.Contains(errs, "--env") {
		t.Fatalf("bad --env: exit %d: %s", code, errs)
	}
	if _, err := client.Get[*apiv1.Pod](e.ctx, e.cl, "default", "dry"); !client.IsNotFound(err) {
		t.Fatalf("a dry run stored pod dry: %v", err)
	}
	if out := e.mustCtl("", "expose", "pod/web", "--port", "81", "--name", "dry", "--dry-run=client", "-o", "json"); !strings.Contains(out, `"kind": "Service"`) || !strings.Contains(out, `"port": 81`) {
		t.Fatalf("expose --dry-run=client -o json:\n%s", out)
	}

	// run -i -t itself is tested end to end in cmd/ctl/internal/streamtest.
	if _, errs, code := e.ctl("", "run", "shell", "--image", "busybox", "-t", "--rm"); code == 0 || !strings.Contains(errs, "-i/--stdin is required for containers with -t/--tty=true") {
		t.Fatalf("run -t without -i: exit %d: %s", code, errs)
	}
	if _, errs, code := e.ctl("", "run", "x", "--image", "busybox", "--restart", "Sometimes"); code == 0 || !strings.Contains(errs, "--restart") {
		t.Fatalf("bad --restart: exit %d: %s", code, errs)
	}
	viewer := e.configFor("user:viewer-rex")
	if _, errs, code := e.ctlAs(viewer, "", "run", "v", "--image", "busybox"); code == 0 || !strings.Contains(errs, "no RBAC rule allows it") {
		t.Fatalf("viewer run: exit %d: %s", code, errs)
	}
	if _, errs, code := e.ctlAs(viewer, "", "expose", "pod", "web", "--port", "80", "--name", "v"); code == 0 || !strings.Contains(errs, "no RBAC rule allows it") {
		t.Fatalf("viewer expose: exit %d: %s", code, errs)
	}
}
