package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/agent/volume"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// mapResolver is a fake Resolver over maps (the real one is the API).
type mapResolver struct {
	cms     map[string]*apiv1.ConfigMap
	secrets map[string]*apiv1.Secret
}

func (m mapResolver) ConfigMap(_ context.Context, _, name string) (*apiv1.ConfigMap, error) {
	if cm, ok := m.cms[name]; ok {
		return cm, nil
	}
	return nil, status.Error(codes.NotFound, "configmap "+name+" not found")
}

func (m mapResolver) Secret(_ context.Context, _, name string) (*apiv1.Secret, error) {
	if s, ok := m.secrets[name]; ok {
		return s, nil
	}
	return nil, status.Error(codes.NotFound, "secret "+name+" not found")
}

var res = mapResolver{
	cms:     map[string]*apiv1.ConfigMap{"cfg": {Data: map[string]string{"a": "1", "b": "2"}, BinaryData: map[string][]byte{"bin": {0, 1}}}},
	secrets: map[string]*apiv1.Secret{"sec": {Data: map[string][]byte{"pw": []byte("hunter2")}}, "pull": {Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{}}`)}}},
}

func basePod() *apiv1.Pod {
	return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "p", Namespace: "ns", Uid: "u-1", Labels: map[string]string{"app": "x"}},
		Spec: &apiv1.PodSpec{NodeName: "w1", Containers: []*apiv1.Container{{Name: "c", Image: "reg/img:1"}}}}
}

func TestConvertPod(t *testing.T) {
	p := basePod()
	p.Spec.ImagePullSecrets = []*apiv1.LocalObjectReference{{Name: "pull"}}
	p.Spec.SecurityContext = &apiv1.PodSecurityContext{RunAsUser: ptr[int64](1000)}
	p.Spec.Volumes = []*apiv1.Volume{
		{Name: "cfg", ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "cfg", Items: []*apiv1.KeyToPath{{Key: "a", Path: "a.txt"}}}},
		{Name: "sec", Secret: &apiv1.SecretVolumeSource{SecretName: "sec"}},
		{Name: "opt", ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "missing", Optional: ptr(true)}},
		{Name: "tmp", EmptyDir: &apiv1.EmptyDirVolumeSource{Medium: "Memory", SizeLimit: "1Mi"}},
	}
	c := p.Spec.Containers[0]
	c.Ports = []*apiv1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	c.EnvFrom = []*apiv1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &apiv1.NameOptional{Name: "cfg"}}}
	c.Env = []*apiv1.EnvVar{{Name: "LIT", Value: "v"},
		{Name: "PW", ValueFrom: &apiv1.EnvVarSource{SecretKeyRef: &apiv1.KeySelector{Name: "sec", Key: "pw"}}},
		{Name: "B", ValueFrom: &apiv1.EnvVarSource{ConfigMapKeyRef: &apiv1.KeySelector{Name: "cfg", Key: "b"}}},
		{Name: "APP", ValueFrom: &apiv1.EnvVarSource{FieldRef: &apiv1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
		{Name: "HOST", ValueFrom: &apiv1.EnvVarSource{FieldRef: &apiv1.ObjectFieldSelector{FieldPath: "status.hostIP"}}}}
	c.Resources = &apiv1.ResourceRequirements{Limits: map[string]string{"cpu": "250m", "memory": "128Mi"}, Requests: map[string]string{"cpu": "0.1"}}
	c.LivenessProbe = &apiv1.Probe{TcpSocket: &apiv1.TCPSocketAction{Port: "http"}, PeriodSeconds: 2}
	c.SecurityContext = &apiv1.SecurityContext{ReadOnlyRootFilesystem: ptr(true), Capabilities: &apiv1.Capabilities{Drop: []string{"ALL"}}}
	rp, err := convertPod(context.Background(), res, p, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if rp.UID != "u-1" || len(rp.ImagePullSecrets) != 1 {
		t.Errorf("pod %+v", rp)
	}
	if f := rp.Volumes[0].Source.(*volume.ConfigMap).Files; len(f) != 1 || string(f["a.txt"]) != "1" {
		t.Errorf("configMap items %v", f)
	}
	if f := rp.Volumes[1].Source.(*volume.Secret).Files; string(f["pw"]) != "hunter2" {
		t.Errorf("secret files %v", f)
	}
	if f := rp.Volumes[2].Source.(*volume.ConfigMap).Files; len(f) != 0 {
		t.Errorf("optional missing configMap: %v", f)
	}
	if ed := rp.Volumes[3].Source.(*volume.EmptyDir); ed.SizeLimit != 1<<20 {
		t.Errorf("emptyDir %+v", ed)
	}
	rc := rp.Containers[0]
	env := map[string]string{}
	for _, e := range rc.Env {
		env[e.Name] = e.Value
	}
	for k, v := range map[string]string{"CFG_a": "1", "CFG_b": "2", "LIT": "v", "PW": "hunter2", "B": "2", "APP": "x", "HOST": "192.0.2.1"} {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q (all: %v)", k, env[k], v, env)
		}
	}
	want := runtime.Resources{Requests: runtime.ResourceList{MilliCPU: 100, Memory: 128 << 20}, Limits: runtime.ResourceList{MilliCPU: 250, Memory: 128 << 20}}
	if rc.Resources != want {
		t.Errorf("resources %+v, want %+v", rc.Resources, want)
	}
	if rc.LivenessProbe == nil || rc.LivenessProbe.TCPSocket.Port != 8080 {
		t.Errorf("probe %+v", rc.LivenessProbe)
	}
	if sc := rc.SecurityContext; sc == nil || *sc.RunAsUser != 1000 || !sc.ReadOnlyRootFilesystem || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("securityContext %+v", sc)
	}
}

func TestConvertPodErrorsNameTheField(t *testing.T) {
	cases := map[string]struct {
		mod  func(p *apiv1.Pod)
		want string
	}{
		"missing secret key": {func(p *apiv1.Pod) {
			p.Spec.Containers[0].Env = []*apiv1.EnvVar{{Name: "X", ValueFrom: &apiv1.EnvVarSource{SecretKeyRef: &apiv1.KeySelector{Name: "sec", Key: "nope"}}}}
		}, `spec.containers[0].env[0] "X".valueFrom.secretKeyRef: key "nope" not in Secret "sec"`},
		"missing configmap": {func(p *apiv1.Pod) {
			p.Spec.Volumes = []*apiv1.Volume{{Name: "v", ConfigMap: &apiv1.ConfigMapVolumeSource{Name: "gone"}}}
		}, `spec.volumes[0] "v".configMap: rpc error: code = NotFound desc = configmap gone not found`},
		"named port unknown": {func(p *apiv1.Pod) {
			p.Spec.Containers[0].ReadinessProbe = &apiv1.Probe{HttpGet: &apiv1.HTTPGetAction{Port: "web"}}
		}, `spec.containers[0].readinessProbe.httpGet.port "web": no container port has that name`},
		"resource field unknown": {func(p *apiv1.Pod) {
			p.Spec.Containers[0].Env = []*apiv1.EnvVar{{Name: "X", ValueFrom: &apiv1.EnvVarSource{ResourceFieldRef: &apiv1.ResourceFieldSelector{Resource: "limits.gpu"}}}}
		}, `spec.containers[0].env[0] "X".valueFrom.resourceFieldRef: resource "limits.gpu"`},
		"bad quantity": {func(p *apiv1.Pod) {
			p.Spec.Containers[0].Resources = &apiv1.ResourceRequirements{Limits: map[string]string{"memory": "lots"}}
		}, `spec.containers[0].resources.limits.memory "lots"`},
		"pvc without a claim reader": {func(p *apiv1.Pod) {
			p.Spec.Volumes = []*apiv1.Volume{{Name: "d", PersistentVolumeClaim: &apiv1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}}
		}, `spec.volumes[0] "d".persistentVolumeClaim "c": this agent reads no persistent volume claims`},
	}
	for name, tc := range cases {
		p := basePod()
		tc.mod(p)
		_, err := convertPod(context.Background(), res, p, "")
		if !errors.Is(err, ErrPodConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrPodConfig containing %q", name, err, tc.want)
		}
	}
}

func TestStatusKeepsTransitionTimes(t *testing.T) {
	p := basePod()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := runtime.PodStatus{UID: "u-1", Phase: runtime.PodRunning, Ready: true, Initialized: true, PodIP: "10.0.0.5", StartTime: t0,
		ContainerStatuses: []runtime.ContainerStatus{{Name: "c", Ready: true, Started: true, State: runtime.ContainerState{Running: &runtime.StateRunning{StartedAt: t0}}}}}
	first := apiStatus(p, st, "192.0.2.1", t0)
	p.Status = first
	again := apiStatus(p, st, "192.0.2.1", t0.Add(time.Minute))
	if !protoEqual(first, again) {
		t.Errorf("unchanged pod got a different status:\n%v\n%v", first, again)
	}
	st.Ready = false
	st.ContainerStatuses[0].Ready = false
	flipped := apiStatus(p, st, "192.0.2.1", t0.Add(time.Minute))
	for _, c := range flipped.GetConditions() {
		if c.GetType() == CondReady && (c.GetStatus() != "False" || c.GetLastTransitionTime() != ts(t0.Add(time.Minute)) || c.GetReason() != reasonContainersNotReady) {
			t.Errorf("Ready condition after flip: %v", c)
		}
	}
	if qosClass(p) != "BestEffort" {
		t.Errorf("qos %s", qosClass(p))
	}
}

func ptr[T any](v T) *T { return &v }

func protoEqual(a, b *apiv1.PodStatus) bool { return proto.Equal(a, b) }
