package agent

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/agent/runtime"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func TestEnvDownwardAPI(t *testing.T) {
	p := basePod()
	p.Spec.ServiceAccountName = "robot"
	p.Spec.Containers = append(p.Spec.Containers, &apiv1.Container{Name: "side", Image: "reg/img:1",
		Resources: &apiv1.ResourceRequirements{Limits: map[string]string{"cpu": "1500m", "memory": "64Mi"}}})
	c := p.Spec.Containers[0]
	c.Resources = &apiv1.ResourceRequirements{Limits: map[string]string{"cpu": "250m", "memory": "128Mi"}, Requests: map[string]string{"memory": "100Mi"}}
	field := func(name, path string) *apiv1.EnvVar {
		return &apiv1.EnvVar{Name: name, ValueFrom: &apiv1.EnvVarSource{FieldRef: &apiv1.ObjectFieldSelector{FieldPath: path}}}
	}
	resField := func(name, ctr, res, div string) *apiv1.EnvVar {
		return &apiv1.EnvVar{Name: name, ValueFrom: &apiv1.EnvVarSource{ResourceFieldRef: &apiv1.ResourceFieldSelector{ContainerName: ctr, Resource: res, Divisor: div}}}
	}
	c.Env = []*apiv1.EnvVar{field("IP", "status.podIP"), field("IPS", "status.podIPs"), field("NAME", "metadata.name"),
		field("SA", "spec.serviceAccountName"), field("NODE", "spec.nodeName"), field("HOST", "status.hostIP"),
		resField("CPU_M", "", "limits.cpu", "1m"), resField("CPU", "", "limits.cpu", ""), resField("MEM_MI", "", "limits.memory", "1Mi"),
		resField("REQ_MEM", "", "requests.memory", "1Mi"), resField("SIDE_CPU", "side", "limits.cpu", "1"), resField("SIDE_MEM_M", "side", "limits.memory", "1M")}
	rp, err := convertPod(context.Background(), res, p, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]runtime.EnvVar{}
	for _, e := range rp.Containers[0].Env {
		got[e.Name] = e
	}
	if got["IP"].FieldPath != runtime.FieldPodIP || got["IPS"].FieldPath != runtime.FieldPodIPs {
		t.Errorf("pod IP env left to the runtime: %+v %+v", got["IP"], got["IPS"])
	}
	// Rounded up like kubelet: 250m → 1 cpu; 64Mi = 67.1M → 68.
	want := map[string]string{"NAME": "p", "SA": "robot", "NODE": "w1", "HOST": "192.0.2.1", "CPU_M": "250", "CPU": "1",
		"MEM_MI": "128", "REQ_MEM": "100", "SIDE_CPU": "2", "SIDE_MEM_M": "68"}
	for k, v := range want {
		if got[k].Value != v || got[k].FieldPath != "" {
			t.Errorf("%s = %+v, want %q", k, got[k], v)
		}
	}
	p.Spec.Containers[0].Env = []*apiv1.EnvVar{resField("X", "ghost", "limits.cpu", "")}
	_, err = convertPod(context.Background(), res, p, "")
	if !errors.Is(err, ErrPodConfig) || !strings.Contains(err.Error(), `resourceFieldRef: containerName "ghost"`) {
		t.Errorf("unknown container: %v", err)
	}
}

func TestConvertLifecycle(t *testing.T) {
	p := basePod()
	c := p.Spec.Containers[0]
	c.Ports = []*apiv1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	c.Lifecycle = &apiv1.Lifecycle{PostStart: &apiv1.LifecycleHandler{Exec: &apiv1.ExecAction{Command: []string{"touch", "/x"}}},
		PreStop: &apiv1.LifecycleHandler{HttpGet: &apiv1.HTTPGetAction{Path: "/quit", Port: "http"}}}
	rp, err := convertPod(context.Background(), res, p, "")
	if err != nil {
		t.Fatal(err)
	}
	lc := rp.Containers[0].Lifecycle
	if lc == nil || lc.PostStart.Exec.Command[1] != "/x" || lc.PreStop.HTTPGet.Port != 8080 || lc.PreStop.HTTPGet.Path != "/quit" {
		t.Errorf("lifecycle %+v", lc)
	}
	c.Lifecycle = &apiv1.Lifecycle{PreStop: &apiv1.LifecycleHandler{HttpGet: &apiv1.HTTPGetAction{Port: "nope"}}}
	if _, err := convertPod(context.Background(), res, p, ""); !errors.Is(err, ErrPodConfig) || !strings.Contains(err.Error(), `spec.containers[0].lifecycle.preStop.httpGet.port "nope"`) {
		t.Errorf("bad hook port: %v", err)
	}
	c.Lifecycle = &apiv1.Lifecycle{PostStart: &apiv1.LifecycleHandler{}}
	if _, err := convertPod(context.Background(), res, p, ""); !errors.Is(err, ErrPodConfig) || !strings.Contains(err.Error(), "lifecycle.postStart: needs exec, httpGet or sleep") {
		t.Errorf("empty hook: %v", err)
	}
}
