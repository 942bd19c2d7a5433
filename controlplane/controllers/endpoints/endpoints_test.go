package endpoints_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/endpoints"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func pod(name, ip string, ready bool, labels map[string]string, ports ...*apiv1.ContainerPort) *apiv1.Pod {
	st := "False"
	if ready {
		st = "True"
	}
	return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "ns", Labels: labels, Uid: "uid-" + name},
		Spec:   &apiv1.PodSpec{NodeName: "n1", Containers: []*apiv1.Container{{Name: "c", Ports: ports}}},
		Status: &apiv1.PodStatus{Phase: "Running", PodIP: ip, Conditions: []*apiv1.PodCondition{{Type: "Ready", Status: st}}}}
}

func summary(subsets []*apiv1.EndpointSubset) string {
	s := ""
	for _, ss := range subsets {
		s += "["
		for _, a := range ss.GetAddresses() {
			s += a.GetIp() + " "
		}
		s += "| "
		for _, a := range ss.GetNotReadyAddresses() {
			s += a.GetIp() + " "
		}
		s += "|"
		for _, p := range ss.GetPorts() {
			s += fmt.Sprintf(" %s:%d/%s", p.GetName(), p.GetPort(), p.GetProtocol())
		}
		s += "]"
	}
	return s
}

func TestSubsets(t *testing.T) {
	web := map[string]string{"app": "web"}
	http8080 := &apiv1.ContainerPort{Name: "http", ContainerPort: 8080}
	http9090 := &apiv1.ContainerPort{Name: "http", ContainerPort: 9090}
	svc := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Name: "web", Namespace: "ns"}, Spec: &apiv1.ServiceSpec{Selector: web,
		Ports: []*apiv1.ServicePort{{Name: "web", Port: 80, TargetPort: "http", Protocol: "TCP"}, {Name: "metrics", Port: 9100, TargetPort: "9100", Protocol: "TCP"}}}}
	cases := []struct {
		name string
		pods []*apiv1.Pod
		want string
	}{
		{"none", nil, ""},
		{"ready and not ready", []*apiv1.Pod{pod("a", "10.0.0.2", true, web, http8080), pod("b", "10.0.0.1", false, web, http8080), pod("c", "10.0.0.3", true, web, http8080)},
			"[10.0.0.2 10.0.0.3 | 10.0.0.1 | web:8080/TCP metrics:9100/TCP]"},
		{"no IP yet", []*apiv1.Pod{pod("a", "", true, web, http8080)}, ""},
		{"named port differs per pod", []*apiv1.Pod{pod("a", "10.0.0.1", true, web, http8080), pod("b", "10.0.0.2", true, web, http9090)},
			"[10.0.0.1 | | web:8080/TCP metrics:9100/TCP][10.0.0.2 | | web:9090/TCP metrics:9100/TCP]"},
		{"named port missing leaves numbered", []*apiv1.Pod{pod("a", "10.0.0.1", true, web)}, "[10.0.0.1 | | metrics:9100/TCP]"},
	}
	for _, c := range cases {
		if got := summary(endpoints.Subsets(svc, c.pods)); got != c.want {
			t.Errorf("%s: got %q want %q", c.name, got, c.want)
		}
	}
	terminating := pod("a", "10.0.0.1", true, web, http8080)
	terminating.Metadata.DeletionTimestamp = "2026-11-21T00:00:00Z"
	if got := summary(endpoints.Subsets(svc, []*apiv1.Pod{terminating})); got != "" {
		t.Errorf("terminating pod listed: %s", got)
	}
	svc.Spec.PublishNotReadyAddresses = true
	if got := summary(endpoints.Subsets(svc, []*apiv1.Pod{pod("b", "10.0.0.1", false, web, http8080)})); got != "[10.0.0.1 | | web:8080/TCP metrics:9100/TCP]" {
		t.Errorf("publishNotReadyAddresses: %s", got)
	}
}

// Endpoints follow pods scheduled onto hollow nodes: running pods appear
// with their named target port, a pod failing readiness moves to
// notReadyAddresses and back, a deleted pod leaves, and the Endpoints go
// with their Service.
func TestEndpointsTrackReadiness(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3, Loops: []string{"scheduler", "endpoints"}})
	cl := c.Client(t)
	ctx := context.Background()
	s := &apiv1.Service{Metadata: &apiv1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: &apiv1.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []*apiv1.ServicePort{{Name: "http", Port: 80, TargetPort: "web"}}}}
	if _, err := client.Create(ctx, cl, s); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: "default", Labels: map[string]string{"app": "web"}},
			Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "nginx", Ports: []*apiv1.ContainerPort{{Name: "web", ContainerPort: 8080}}}}}}
		if _, err := client.Create(ctx, cl, p); err != nil {
			t.Fatal(err)
		}
	}
	other := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "other", Namespace: "default", Labels: map[string]string{"app": "db"}},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "db"}}}}
	if _, err := client.Create(ctx, cl, other); err != nil {
		t.Fatal(err)
	}
	counts := func() (ready, notReady int, ok bool) {
		ep, err := client.Get[*apiv1.Endpoints](ctx, cl, "default", "web")
		if err != nil {
			return 0, 0, false
		}
		for _, ss := range ep.GetSubsets() {
			if len(ss.GetPorts()) != 1 || ss.GetPorts()[0].GetPort() != 8080 || ss.GetPorts()[0].GetName() != "http" {
				t.Fatalf("ports %v, want http:8080", ss.GetPorts())
			}
			ready += len(ss.GetAddresses())
			notReady += len(ss.GetNotReadyAddresses())
		}
		return ready, notReady, true
	}
	want := func(what string, r, nr int) {
		t.Helper()
		testutil.WaitFor(t, 15*time.Second, what, func() bool {
			a, b, ok := counts()
			return ok && a == r && b == nr
		})
	}
	want("3 ready endpoints", 3, 0)
	c.Pool.SetPodReady("default", "web-1", false)
	want("web-1 not ready", 2, 1)
	c.Pool.SetPodReady("default", "web-1", true)
	want("web-1 ready again", 3, 0)
	if _, _, err := cl.Delete(ctx, "Pod", "default", "web-0", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want("deleted pod gone", 2, 0)
	if _, _, err := cl.Delete(ctx, "Service", "default", "web", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "endpoints deleted with the service", func() bool {
		_, err := client.Get[*apiv1.Endpoints](ctx, cl, "default", "web")
		return client.IsNotFound(err)
	})
}
