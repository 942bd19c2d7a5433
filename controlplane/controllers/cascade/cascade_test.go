package cascade_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func deployment(name, ns string, replicas int32) *apiv1.Deployment {
	l := map[string]string{"app": name}
	return &apiv1.Deployment{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: ns},
		Spec: &apiv1.DeploymentSpec{Replicas: &replicas, Selector: &apiv1.LabelSelector{MatchLabels: l},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: l},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "img:1"}}}}}}
}

type env struct {
	t   *testing.T
	cl  *client.Client
	ctx context.Context
}

func (e *env) count(kind, ns, sel string) int {
	envs, _, err := e.cl.ListEnvelopes(e.ctx, kind, client.ListOptions{Namespace: ns, LabelSelector: sel})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(envs)
}

func (e *env) runningPods(ns, sel string) int {
	pods, _, err := client.List[*apiv1.Pod](e.ctx, e.cl, client.ListOptions{Namespace: ns, LabelSelector: sel})
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, p := range pods {
		if p.GetStatus().GetPhase() == "Running" && p.GetMetadata().GetDeletionTimestamp() == "" {
			n++
		}
	}
	return n
}

func (e *env) deploy(name, ns string, replicas int32) {
	e.t.Helper()
	if _, err := client.Create(e.ctx, e.cl, deployment(name, ns, replicas)); err != nil {
		e.t.Fatal(err)
	}
	testutil.WaitFor(e.t, 30*time.Second, name+" running", func() bool { return e.runningPods(ns, "app="+name) == int(replicas) })
}

// TestCascadingDeletionWithControllers: Foreground and Background deletes
// of a Deployment remove its ReplicaSets and pods without the controllers
// recreating any; Orphan leaves a working ReplicaSet behind.
func TestCascadingDeletionWithControllers(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	e := &env{t: t, cl: c.Client(t), ctx: ctx}

	for _, policy := range []string{"Foreground", "Background"} {
		e.deploy("fg", "default", 3)
		if _, _, err := e.cl.Delete(ctx, "Deployment", "default", "fg", client.DeleteOptions{PropagationPolicy: policy}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, policy+": deployment, replicasets and pods gone", func() bool {
			return e.count("Deployment", "default", "") == 0 && e.count("ReplicaSet", "default", "app=fg") == 0 && e.count("Pod", "default", "app=fg") == 0
		})
	}

	e.deploy("orph", "default", 2)
	var err error
	if _, _, err = e.cl.Delete(ctx, "Deployment", "default", "orph", client.DeleteOptions{PropagationPolicy: "Orphan"}); err != nil {
		t.Fatal(err)
	}
	var sets []*apiv1.ReplicaSet
	if !testutil.Eventually(30*time.Second, func() bool {
		sets, _, err = client.List[*apiv1.ReplicaSet](ctx, e.cl, client.ListOptions{Namespace: "default", LabelSelector: "app=orph"})
		return err == nil && len(sets) == 1 && len(sets[0].GetMetadata().GetOwnerReferences()) == 0 && e.count("Deployment", "default", "") == 0
	}) {
		t.Fatalf("want one orphaned ReplicaSet without owner and no Deployment; replicasets: %v, deployments: %d", sets, e.count("Deployment", "default", ""))
	}
	pods, _, err := client.List[*apiv1.Pod](ctx, e.cl, client.ListOptions{Namespace: "default", LabelSelector: "app=orph"})
	if err != nil || len(pods) != 2 {
		t.Fatalf("orphaned pods: %d, %v", len(pods), err)
	}
	if ref := ctrlkit.ControllerOf(pods[0].GetMetadata()); ref == nil || ref.GetKind() != "ReplicaSet" {
		t.Fatalf("orphaned replicaset's pods should stay its own: %v", pods[0].GetMetadata().GetOwnerReferences())
	}
	if _, _, err := e.cl.Delete(ctx, "Pod", "default", pods[0].GetMetadata().GetName(), client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "orphaned replicaset still keeps 2 pods", func() bool {
		return e.runningPods("default", "app=orph") == 2 && e.count("Pod", "default", "app=orph") == 2
	})
}

// TestNamespaceDeletionWithControllers: deleting a namespace with a
// running Deployment removes everything in it, then the namespace.
func TestNamespaceDeletionWithControllers(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	e := &env{t: t, cl: c.Client(t), ctx: ctx}
	if _, err := client.Create(ctx, e.cl, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	e.deploy("web", "shop", 3)
	if _, _, err := e.cl.Delete(ctx, "Namespace", "", "shop", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "namespace shop and its contents gone", func() bool {
		_, err := client.Get[*apiv1.Namespace](ctx, e.cl, "", "shop")
		return client.IsNotFound(err) && e.count("Pod", "shop", "") == 0 && e.count("ReplicaSet", "shop", "") == 0
	})
}
