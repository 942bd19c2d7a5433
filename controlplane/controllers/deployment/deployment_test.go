package deployment_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	"github.com/skiffhq/skiff/controlplane/controllers/replicaset"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func i32(v int32) *int32 { return &v }

func newDeployment(name string, replicas int32, image string) *apiv1.Deployment {
	l := map[string]string{"app": name}
	return &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &apiv1.DeploymentSpec{Replicas: i32(replicas), Selector: &apiv1.LabelSelector{MatchLabels: l},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: l},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: image}}}}}}
}

func start(t *testing.T) (*ctrltest.Env, *ctrltest.Kubelet) {
	e := ctrltest.Start(t)
	kl := e.StartKubelet()
	cfg := ctrlkit.DefaultConfig(e.Client)
	cfg.Resync = time.Second
	e.Run(replicaset.NewReplicaSet(cfg), deployment.New(cfg))
	return e, kl
}

func getD(e *ctrltest.Env, name string) *apiv1.Deployment {
	d, err := client.Get[*apiv1.Deployment](e.Ctx(5*time.Second), e.Client, "default", name)
	if err != nil {
		e.T.Fatal(err)
	}
	return d
}

func progressing(d *apiv1.Deployment) *apiv1.DeploymentCondition {
	for _, c := range d.GetStatus().GetConditions() {
		if c.GetType() == deployment.CondProgressing {
			return c
		}
	}
	return nil
}

func rolledOut(e *ctrltest.Env, name string, replicas int32) func() bool {
	return func() bool {
		d := getD(e, name)
		st := d.GetStatus()
		return st.GetObservedGeneration() == d.GetMetadata().GetGeneration() && st.GetUpdatedReplicas() == replicas &&
			st.GetAvailableReplicas() == replicas && st.GetReplicas() == replicas && progressing(d).GetReason() == deployment.ReasonNewRSAvailable
	}
}

func images(e *ctrltest.Env, sel string) map[string]int {
	out := map[string]int{}
	for _, p := range e.ActivePods("default", sel) {
		out[p.GetSpec().GetContainers()[0].GetImage()]++
	}
	return out
}

// TestRollingUpdateHonoursSurgeAndUnavailableAtEveryEvent: 5 replicas,
// maxSurge 2 / maxUnavailable 1 (25%): through two image updates, no pod
// watch event ever shows more than 7 active pods or fewer than 4 ready.
// Revisions count up, old ReplicaSets stay (scaled to 0) as history.
func TestRollingUpdateHonoursSurgeAndUnavailableAtEveryEvent(t *testing.T) {
	e, _ := start(t)
	ctx := e.Ctx(90 * time.Second)
	if _, err := client.Create(ctx, e.Client, newDeployment("web", 5, "img:1")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "initial rollout", rolledOut(e, "web", 5))

	var armed atomic.Bool
	var mu sync.Mutex
	var violations []string
	maxActive, minReady := 0, 100
	e.PodWatch("default", "app=web", func(pods map[string]*apiv1.Pod) {
		if !armed.Load() {
			return
		}
		active, ready := ctrltest.Counts(pods)
		mu.Lock()
		defer mu.Unlock()
		maxActive, minReady = max(maxActive, active), min(minReady, ready)
		if active > 7 || ready < 4 {
			violations = append(violations, fmt.Sprintf("active=%d ready=%d", active, ready))
		}
	})
	armed.Store(true)
	for _, img := range []string{"img:2", "img:3"} {
		patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":%q}]}}}}`, img)
		if _, err := client.Patch[*apiv1.Deployment](ctx, e.Client, "default", "web", []byte(patch)); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, "rollout to "+img, func() bool {
			return rolledOut(e, "web", 5)() && images(e, "app=web")[img] == 5 && len(images(e, "app=web")) == 1
		})
	}
	mu.Lock()
	t.Logf("during rollouts: max active pods %d (limit 7), min ready %d (limit 4)", maxActive, minReady)
	if len(violations) > 0 {
		t.Fatalf("limits broken at %d events, first: %s", len(violations), violations[0])
	}
	if maxActive < 6 {
		t.Errorf("max active %d: the rollout never surged, so the check proved little", maxActive)
	}
	mu.Unlock()

	d := getD(e, "web")
	if got := d.GetMetadata().GetAnnotations()[deployment.RevisionAnnotation]; got != "3" {
		t.Fatalf("deployment revision %q, want 3", got)
	}
	sets, _, err := client.List[*apiv1.ReplicaSet](ctx, e.Client, client.ListOptions{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	owned := deployment.OwnedReplicaSets(d, sets)
	if len(owned) != 3 {
		t.Fatalf("%d ReplicaSets, want 3 (two old kept as history)", len(owned))
	}
	for i, rs := range owned {
		if deployment.Revision(rs.GetMetadata()) != int64(i+1) {
			t.Fatalf("ReplicaSet %s revision %d, want %d", rs.GetMetadata().GetName(), deployment.Revision(rs.GetMetadata()), i+1)
		}
		want := int32(0)
		if i == 2 {
			want = 5
		}
		if deployment.RSReplicas(rs) != want {
			t.Fatalf("ReplicaSet %s has %d replicas, want %d", rs.GetMetadata().GetName(), deployment.RSReplicas(rs), want)
		}
		if rs.GetMetadata().GetLabels()[deployment.PodTemplateHashLabel] == "" {
			t.Fatalf("ReplicaSet %s without pod-template-hash label", rs.GetMetadata().GetName())
		}
	}

	// revisionHistoryLimit 1 deletes all but the newest old set.
	if _, err := client.Patch[*apiv1.Deployment](ctx, e.Client, "default", "web", []byte(`{"spec":{"revisionHistoryLimit":1}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "history trimmed to 1 old ReplicaSet", func() bool {
		sets, _, err := client.List[*apiv1.ReplicaSet](ctx, e.Client, client.ListOptions{Namespace: "default"})
		return err == nil && len(deployment.OwnedReplicaSets(d, sets)) == 2
	})
}

// TestRecreateStopsOldPodsFirst: with Recreate, no pod of the new template
// exists while a pod of the old one is still active.
func TestRecreateStopsOldPodsFirst(t *testing.T) {
	e, _ := start(t)
	ctx := e.Ctx(60 * time.Second)
	d := newDeployment("batch", 3, "img:1")
	d.Spec.Strategy = &apiv1.DeploymentStrategy{Type: "Recreate"}
	if _, err := client.Create(ctx, e.Client, d); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "initial rollout", rolledOut(e, "batch", 3))
	var bad atomic.Value
	e.PodWatch("default", "app=batch", func(pods map[string]*apiv1.Pod) {
		imgs := map[string]bool{}
		for _, p := range pods {
			if p.GetMetadata().GetDeletionTimestamp() == "" {
				imgs[p.GetSpec().GetContainers()[0].GetImage()] = true
			}
		}
		if len(imgs) > 1 {
			bad.Store(fmt.Sprint(imgs))
		}
	})
	if _, err := client.Patch[*apiv1.Deployment](ctx, e.Client, "default", "batch",
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"img:2"}]}}}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "recreated", func() bool {
		return rolledOut(e, "batch", 3)() && images(e, "app=batch")["img:2"] == 3
	})
	if v := bad.Load(); v != nil {
		t.Fatalf("old and new pods ran together: %v", v)
	}
}

// TestPauseResumeAndProgressDeadline: a paused Deployment scales but does
// not roll; on resume it rolls; a rollout whose pods never get ready is
// marked ProgressDeadlineExceeded after progressDeadlineSeconds.
func TestPauseResumeAndProgressDeadline(t *testing.T) {
	e, kl := start(t)
	ctx := e.Ctx(90 * time.Second)
	d := newDeployment("api", 2, "img:1")
	d.Spec.ProgressDeadlineSeconds = i32(2)
	if _, err := client.Create(ctx, e.Client, d); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "initial rollout", rolledOut(e, "api", 2))
	if _, err := client.Patch[*apiv1.Deployment](ctx, e.Client, "default", "api", []byte(`{"spec":{"paused":true}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "Progressing=Unknown DeploymentPaused", func() bool {
		return progressing(getD(e, "api")).GetReason() == deployment.ReasonPaused
	})
	if _, err := client.Patch[*apiv1.Deployment](ctx, e.Client, "default", "api",
		[]byte(`{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"c","image":"img:2"}]}}}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "paused deployment scaled to 3 old pods", func() bool {
		im := images(e, "app=api")
		return im["img:1"] == 3 && len(im) == 1
	})
	// A wrong rollout gets 300 ms to show, checked throughout.
	var im map[string]int
	if testutil.Eventually(300*time.Millisecond, func() bool { im = images(e, "app=api"); return im["img:2"] != 0 }) {
		t.Fatalf("paused deployment rolled: %v", im)
	}
	// Resume with pods of the new template never getting ready.
	kl.HoldIf(func(p *apiv1.Pod) bool { return p.GetSpec().GetContainers()[0].GetImage() == "img:2" })
	if _, err := client.Patch[*apiv1.Deployment](ctx, e.Client, "default", "api", []byte(`{"spec":{"paused":false}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "ProgressDeadlineExceeded", func() bool {
		c := progressing(getD(e, "api"))
		return c.GetStatus() == "False" && c.GetReason() == deployment.ReasonDeadlineExceeded
	})
	if im := images(e, "app=api"); im["img:1"] < 2 {
		t.Fatalf("stuck rollout took availability below minimum: %v", im)
	}
	kl.HoldIf(nil)
	for _, p := range e.ActivePods("default", "app=api") {
		if p.GetStatus().GetPhase() != "Running" {
			_ = ctrltest.SetPhase(ctx, e.Client, p, "Running", true)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "rollout finishes after pods get ready", func() bool {
		return rolledOut(e, "api", 3)() && images(e, "app=api")["img:2"] == 3
	})
}
