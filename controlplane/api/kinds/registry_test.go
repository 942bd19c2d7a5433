package kinds

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func TestRegistryHasAllKinds(t *testing.T) {
	r := NewRegistry()
	want := map[string]struct {
		short, plural, version string
		namespaced             bool
	}{
		"Namespace": {"ns", "namespaces", "v1", false}, "Node": {"no", "nodes", "v1", false},
		"Pod": {"po", "pods", "v1", true}, "ReplicaSet": {"rs", "replicasets", "apps/v1", true},
		"ReplicationController": {"rc", "replicationcontrollers", "v1", true},
		"Deployment":            {"deploy", "deployments", "apps/v1", true}, "DaemonSet": {"ds", "daemonsets", "apps/v1", true},
		"StatefulSet": {"sts", "statefulsets", "apps/v1", true}, "Job": {"", "jobs", "batch/v1", true},
		"CronJob": {"cj", "cronjobs", "batch/v1", true}, "Service": {"svc", "services", "v1", true},
		"Endpoints": {"ep", "endpoints", "v1", true}, "ConfigMap": {"cm", "configmaps", "v1", true},
		"Secret": {"", "secrets", "v1", true}, "ResourceQuota": {"quota", "resourcequotas", "v1", true},
		"LimitRange": {"limits", "limitranges", "v1", true}, "Ingress": {"ing", "ingresses", "networking.k8s.io/v1", true},
		"HorizontalPodAutoscaler": {"hpa", "horizontalpodautoscalers", "autoscaling/v2", true},
		"Event":                   {"ev", "events", "v1", true},
		"Lease":                   {"", "leases", "coordination.k8s.io/v1", true},
		"Role":                    {"", "roles", "rbac.authorization.k8s.io/v1", true},
		"RoleBinding":             {"", "rolebindings", "rbac.authorization.k8s.io/v1", true},
		"ClusterRole":             {"", "clusterroles", "rbac.authorization.k8s.io/v1", false},
		"ClusterRoleBinding":      {"", "clusterrolebindings", "rbac.authorization.k8s.io/v1", false},
		"PodDisruptionBudget":     {"pdb", "poddisruptionbudgets", "policy/v1", true},
		"NodeMetrics":             {"", "nodemetrics", "metrics.k8s.io/v1beta1", false},
		"ServiceAccount":          {"sa", "serviceaccounts", "v1", true},
		"PriorityClass":           {"pc", "priorityclasses", "scheduling.k8s.io/v1", false},
		"NetworkPolicy":           {"netpol", "networkpolicies", "networking.k8s.io/v1", true},
		"IngressClass":            {"", "ingressclasses", "networking.k8s.io/v1", false},
	}
	if got := len(r.Kinds()); got != len(want) {
		t.Errorf("registry has %d kinds, want %d", got, len(want))
	}
	for name, w := range want {
		k, ok := r.ForKind(name)
		if !ok {
			t.Errorf("kind %s not registered", name)
			continue
		}
		for _, alias := range []string{name, strings.ToLower(name), w.plural, w.short, k.Resource()} {
			if alias == "" {
				continue
			}
			if got, err := r.Lookup(alias); err != nil || got != k {
				t.Errorf("Lookup(%q) = %v, %v; want %s", alias, got, err, name)
			}
		}
		if k.APIVersion() != w.version || k.Namespaced != w.namespaced {
			t.Errorf("%s: apiVersion %s namespaced %v, want %s %v", name, k.APIVersion(), k.Namespaced, w.version, w.namespaced)
		}
		obj := k.New()
		if obj.GetKind() != name || obj.GetApiVersion() != w.version {
			t.Errorf("%s.New() has type meta %s/%s", name, obj.GetApiVersion(), obj.GetKind())
		}
		if got, err := r.ForObject(obj); err != nil || got != k {
			t.Errorf("ForObject(%s) = %v, %v", name, got, err)
		}
		// Every kind renders a row with one cell per column, even when empty.
		if cells := k.Row(obj, time.Now()); len(cells) != len(k.Columns()) {
			t.Errorf("%s: row has %d cells for %d columns", name, len(cells), len(k.Columns()))
		}
	}
	if _, err := r.Lookup("widgets"); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Lookup(widgets) err = %v, want ErrUnknownKind", err)
	}
}

func TestStorageKeys(t *testing.T) {
	r := NewRegistry()
	deploy, _ := r.ForKind("Deployment")
	ns, _ := r.ForKind("Namespace")
	if got := deploy.Key("shop", "web"); got != "/registry/deployments/shop/web" {
		t.Errorf("deployment key = %s", got)
	}
	if got := deploy.Prefix("shop"); got != "/registry/deployments/shop/" {
		t.Errorf("deployment prefix = %s", got)
	}
	if got := deploy.Prefix(""); got != "/registry/deployments/" {
		t.Errorf("all-namespace prefix = %s", got)
	}
	if got := ns.Key("", "shop"); got != "/registry/namespaces/shop" {
		t.Errorf("namespace key = %s", got)
	}
}

func TestResolveRetiredVersions(t *testing.T) {
	r := NewRegistry()
	tests := []struct{ apiVersion, kind, want string }{
		{"extensions/v1beta1", "Deployment", `use apiVersion "apps/v1"`},
		{"apps/v1beta2", "DaemonSet", `use apiVersion "apps/v1"`},
		{"apps/v1beta1", "StatefulSet", `use apiVersion "apps/v1"`},
		{"batch/v1beta1", "CronJob", `use apiVersion "batch/v1"`},
		{"extensions/v1beta1", "Ingress", `use apiVersion "networking.k8s.io/v1"`},
		{"autoscaling/v2beta2", "HorizontalPodAutoscaler", `use apiVersion "autoscaling/v2"`},
		{"v1beta3", "ReplicationController", `use apiVersion "v1"`},
		{"apps/v1", "Service", `use apiVersion "v1"`},
	}
	for _, tt := range tests {
		_, err := r.Resolve(tt.apiVersion, tt.kind)
		if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Resolve(%s, %s) = %v; want ErrUnsupportedVersion mentioning %s", tt.apiVersion, tt.kind, err, tt.want)
		}
	}
	if _, err := r.Resolve("v1", "Widget"); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Resolve(v1, Widget) = %v, want ErrUnknownKind", err)
	}
	if _, err := r.Resolve("v1", "pod"); err == nil || !strings.Contains(err.Error(), `did you mean "Pod"`) {
		t.Errorf("Resolve(v1, pod) = %v, want a did-you-mean", err)
	}
}

func TestPackUnpack(t *testing.T) {
	r := NewRegistry()
	pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "p", Namespace: "default"}}
	env, err := r.Pack(pod)
	if err != nil {
		t.Fatal(err)
	}
	if env.Kind != "Pod" {
		t.Errorf("envelope kind %q", env.Kind)
	}
	obj, k, err := r.Unpack(env)
	if err != nil || k.Name != "Pod" || !proto.Equal(obj, pod) {
		t.Fatalf("Unpack = %v, %v, %v", obj, k, err)
	}
	env.Kind = "Service"
	if _, _, err := r.Unpack(env); err == nil {
		t.Error("Unpack accepted an envelope whose kind disagrees with its payload")
	}
}

func TestSpecEqualAndStatus(t *testing.T) {
	a := &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Name: "a", Generation: 1}, Spec: &apiv1.DeploymentSpec{Replicas: ptr[int32](2)}}
	b := proto.Clone(a).(*apiv1.Deployment)
	b.Metadata.ResourceVersion = "9"
	b.Status = &apiv1.DeploymentStatus{Replicas: 2}
	if !SpecEqual(a, b) {
		t.Error("metadata/status changes must not count as spec changes")
	}
	b.Spec.Replicas = ptr[int32](3)
	if SpecEqual(a, b) {
		t.Error("replicas change must count as a spec change")
	}
	CopyStatus(a, b)
	if a.GetStatus().GetReplicas() != 2 {
		t.Error("CopyStatus did not copy")
	}
	cm := &apiv1.ConfigMap{}
	if Status(cm) != nil {
		t.Error("ConfigMap has no status")
	}
	if Meta(cm).Name = "x"; cm.GetMetadata().GetName() != "x" {
		t.Error("Meta must create metadata in place")
	}
}

func TestValidateErrorFormat(t *testing.T) {
	r := NewRegistry()
	k, _ := r.ForKind("Deployment")
	d := &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Name: "web"}, Spec: &apiv1.DeploymentSpec{
		Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "web", Image: "nginx",
				Ports: []*apiv1.ContainerPort{{ContainerPort: 70000}}}}}}}}
	k.Default(d)
	errs := k.Validate(d)
	want := "spec.template.spec.containers[0].ports[0].containerPort: 70000 must be 1-65535"
	if len(errs) != 1 || errs[0].Error() != want {
		t.Fatalf("errors = %v, want exactly %q", errs, want)
	}
	old := proto.Clone(d).(*apiv1.Deployment)
	d.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort = 80
	d.Spec.Selector.MatchLabels["tier"] = "x"
	d.Spec.Template.Metadata.Labels["tier"] = "x"
	if errs := k.ValidateUpdate(old, d); len(errs) != 1 || errs[0].Path != "spec.selector" {
		t.Errorf("selector change on update: %v, want spec.selector immutable", errs)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Second: "5s", 150 * time.Second: "2m30s", 95 * time.Minute: "95m", 5*time.Hour + 10*time.Minute: "5h10m",
		30 * time.Hour: "30h", 50 * time.Hour: "2d2h", 200 * 24 * time.Hour: "200d", -time.Second: "<invalid>",
	} {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%v) = %s, want %s", d, got, want)
		}
	}
}
