package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus/consensustest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func startTokenServer(t *testing.T, tokens bool) *Server {
	t.Helper()
	sc := consensustest.Start(t, 1, nil)
	cfg := DefaultConfig()
	cfg.Store = sc.MustLeader(t).Store()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.ServiceAccountTokens = tokens
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func saPod(name, sa string, automount *bool) *apiv1.Pod {
	return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: name},
		Spec: &apiv1.PodSpec{ServiceAccountName: sa, AutomountServiceAccountToken: automount,
			InitContainers: []*apiv1.Container{{Name: "init", Image: "busybox:1.36"}},
			Containers: []*apiv1.Container{{Name: "a", Image: "busybox:1.36", Env: []*apiv1.EnvVar{{Name: "KUBERNETES_SERVICE_PORT", Value: "mine"}}},
				{Name: "b", Image: "busybox:1.36"}}}}
}

// apiAccessVolume returns the pod's kube-api-access volume, or nil.
func apiAccessVolume(p *apiv1.Pod) *apiv1.Volume {
	for _, v := range p.GetSpec().GetVolumes() {
		if strings.HasPrefix(v.GetName(), apiAccessVolumePrefix) {
			return v
		}
	}
	return nil
}

func env(c *apiv1.Container, name string) (string, bool) {
	for _, e := range c.GetEnv() {
		if e.GetName() == name {
			return e.GetValue(), true
		}
	}
	return "", false
}

// The ServiceAccount admission, as Kubernetes': a pod's account defaults
// to "default" and must exist otherwise; the token volume (bound token
// 3607 s, ca.crt from kube-root-ca.crt, the namespace) is mounted
// read-only in every container and init container, with the kubernetes
// Service's address in the environment (a variable the pod sets wins);
// automountServiceAccountToken false on the pod or the account leaves
// all of it out; so does a server whose cluster mints no tokens.
func TestServiceAccountAdmissionMountsTheToken(t *testing.T) {
	s := startTokenServer(t, true)
	if _, err := createT(t, s, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	out, err := createT(t, s, saPod("p1", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	p := out.(*apiv1.Pod)
	if p.GetSpec().GetServiceAccountName() != "default" {
		t.Errorf("serviceAccountName %q, want default", p.GetSpec().GetServiceAccountName())
	}
	v := apiAccessVolume(p)
	if v == nil {
		t.Fatalf("no kube-api-access volume in %v", p.GetSpec().GetVolumes())
	}
	if len(v.GetName()) != len(apiAccessVolumePrefix)+5 {
		t.Errorf("volume name %q: want kube-api-access-<5 characters>", v.GetName())
	}
	src := v.GetProjected().GetSources()
	if len(src) != 3 || src[0].GetServiceAccountToken().GetExpirationSeconds() != 3607 || src[0].GetServiceAccountToken().GetPath() != "token" ||
		src[1].GetConfigMap().GetName() != "kube-root-ca.crt" || src[1].GetConfigMap().GetItems()[0].GetKey() != "ca.crt" ||
		src[2].GetDownwardAPI().GetItems()[0].GetFieldRef().GetFieldPath() != "metadata.namespace" || src[2].GetDownwardAPI().GetItems()[0].GetPath() != "namespace" {
		t.Errorf("projected sources %v", src)
	}
	for _, c := range append(append([]*apiv1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		ok := false
		for _, m := range c.GetVolumeMounts() {
			ok = ok || (m.GetName() == v.GetName() && m.GetReadOnly() && m.GetMountPath() == ServiceAccountMountPath)
		}
		if !ok {
			t.Errorf("container %s: no read-only mount of %s at %s: %v", c.GetName(), v.GetName(), ServiceAccountMountPath, c.GetVolumeMounts())
		}
	}
	for _, c := range p.Spec.Containers {
		if h, _ := env(c, "KUBERNETES_SERVICE_HOST"); h != "10.96.0.1" {
			t.Errorf("container %s: KUBERNETES_SERVICE_HOST %q, want 10.96.0.1", c.GetName(), h)
		}
		if h, _ := env(c, "KUBERNETES_SERVICE_PORT_HTTPS"); h != "443" {
			t.Errorf("container %s: KUBERNETES_SERVICE_PORT_HTTPS %q, want 443", c.GetName(), h)
		}
	}
	if port, _ := env(p.Spec.Containers[0], "KUBERNETES_SERVICE_PORT"); port != "mine" {
		t.Errorf("the pod's own KUBERNETES_SERVICE_PORT became %q", port)
	}
	if port, _ := env(p.Spec.Containers[1], "KUBERNETES_SERVICE_PORT"); port != "443" {
		t.Errorf("KUBERNETES_SERVICE_PORT %q, want 443", port)
	}

	// A missing account is refused as Kubernetes refuses it.
	_, err = createT(t, s, saPod("p2", "robot", nil))
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `error looking up service account default/robot: serviceaccount "robot" not found`) {
		t.Fatalf("pod of a missing account: %v, want forbidden: error looking up service account default/robot", err)
	}

	// automount false: on the pod, or on the account (the pod's true wins).
	no, yes := false, true
	out, err = createT(t, s, saPod("p3", "", &no))
	if err != nil {
		t.Fatal(err)
	}
	if v := apiAccessVolume(out.(*apiv1.Pod)); v != nil {
		t.Errorf("automountServiceAccountToken false on the pod: got volume %s", v.GetName())
	}
	if _, ok := env(out.(*apiv1.Pod).Spec.Containers[1], "KUBERNETES_SERVICE_HOST"); ok {
		t.Error("automount false: KUBERNETES_SERVICE_HOST still set")
	}
	if _, err := createT(t, s, &apiv1.ServiceAccount{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "quiet"}, AutomountServiceAccountToken: &no}); err != nil {
		t.Fatal(err)
	}
	out, err = createT(t, s, saPod("p4", "quiet", nil))
	if err != nil {
		t.Fatal(err)
	}
	if v := apiAccessVolume(out.(*apiv1.Pod)); v != nil {
		t.Errorf("account with automount false: got volume %s", v.GetName())
	}
	out, err = createT(t, s, saPod("p5", "quiet", &yes))
	if err != nil {
		t.Fatal(err)
	}
	if apiAccessVolume(out.(*apiv1.Pod)) == nil {
		t.Error("pod automount true over an account's false: no volume")
	}

	// A server whose cluster mints no tokens adds nothing.
	plain := startTokenServer(t, false)
	if _, err := createT(t, plain, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	out, err = createT(t, plain, saPod("p6", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	if v := apiAccessVolume(out.(*apiv1.Pod)); v != nil {
		t.Errorf("ServiceAccountTokens off: got volume %s", v.GetName())
	}
}

// A new namespace holds its default ServiceAccount from its first
// revision (same write), so a pod created right after it is admitted
// without the serviceaccount controller; a pod naming "default" where it
// is missing (deleted, no controller to make it again) is refused with
// Kubernetes' words, after looking for it again for a while.
func TestDefaultServiceAccountComesWithTheNamespace(t *testing.T) {
	s := startTokenServer(t, false)
	ns, err := createT(t, s, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "fresh"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := s.get(ctx, s.kind("ServiceAccount"), "fresh", "default", false)
	if err != nil || st == nil {
		t.Fatalf("default ServiceAccount of a new namespace: %v %v, want it stored with the namespace", st, err)
	}
	if rv := formatRev(st.rev); rv != ns.GetMetadata().GetResourceVersion() || st.obj.GetMetadata().GetUid() == "" {
		t.Errorf("default ServiceAccount at revision %s uid %q, want the namespace's revision %s and a uid", rv, st.obj.GetMetadata().GetUid(), ns.GetMetadata().GetResourceVersion())
	}
	pod := saPod("right-after", "", nil)
	pod.Metadata.Namespace = "fresh"
	if _, err := createT(t, s, pod); err != nil {
		t.Fatalf("pod right after its namespace: %v", err)
	}
	if _, _, err := s.delete(ctx, s.kind("ServiceAccount"), "fresh", "default", deleteOpts{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pod = saPod("no-account", "", nil)
	pod.Metadata.Namespace = "fresh"
	_, err = createT(t, s, pod)
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `error looking up service account fresh/default: serviceaccount "default" not found`) {
		t.Fatalf("pod without its namespace's default account: %v, want forbidden: error looking up service account fresh/default", err)
	}
	if waited := time.Since(start); waited < (defaultAccountRetries-1)*defaultAccountPause {
		t.Errorf("refused after %s: the default account was not looked for again", waited)
	}
}
