package serviceaccount_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestDefaultServiceAccountPerNamespace: a new namespace gets its default
// ServiceAccount, one deleted comes back; a pod naming none runs as
// "default" (the deprecated serviceAccount field follows), and a pod naming
// one that does not exist is refused until it does.
func TestDefaultServiceAccountPerNamespace(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"serviceaccount"}})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := client.Create(ctx, cl, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "team"}}); err != nil {
		t.Fatal(err)
	}
	hasDefault := func() bool {
		_, err := client.Get[*apiv1.ServiceAccount](ctx, cl, "team", "default")
		return err == nil
	}
	testutil.WaitFor(t, 20*time.Second, "default ServiceAccount in the new namespace", hasDefault)
	if _, _, err := cl.Delete(ctx, "ServiceAccount", "team", "default", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the deleted default ServiceAccount made again", hasDefault)

	pod := func(name, sa string) *apiv1.Pod {
		return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "team", Name: name},
			Spec: &apiv1.PodSpec{ServiceAccountName: sa, Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
	}
	p, err := client.Create(ctx, cl, pod("plain", ""))
	if err != nil {
		t.Fatal(err)
	}
	if p.GetSpec().GetServiceAccountName() != "default" || p.GetSpec().GetServiceAccount() != "default" {
		t.Fatalf("pod without an account: serviceAccountName %q serviceAccount %q, want default", p.GetSpec().GetServiceAccountName(), p.GetSpec().GetServiceAccount())
	}
	if _, err := client.Create(ctx, cl, pod("builder-pod", "builder")); err == nil {
		t.Fatal("a pod naming a missing ServiceAccount was admitted")
	}
	if _, err := client.Create(ctx, cl, &apiv1.ServiceAccount{Metadata: &apiv1.ObjectMeta{Namespace: "team", Name: "builder"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(ctx, cl, pod("builder-pod", "builder")); err != nil {
		t.Fatalf("pod naming an existing ServiceAccount: %v", err)
	}
}

// TestWorkloadsRetryUntilTheirServiceAccountExists: the API refuses a pod
// whose service account does not exist yet (as Kubernetes does), so the
// controllers that make pods — Deployment through its ReplicaSet, Job,
// StatefulSet — record FailedCreate with Kubernetes' words and retry with
// backoff; once the account is made (applied after the workloads, or by
// the serviceaccount controller, which does not run here), every workload
// gets its pods without being touched again.
func TestWorkloadsRetryUntilTheirServiceAccountExists(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: -1, Loops: []string{"deployment", "replicaset", "job", "statefulset"}})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := client.Create(ctx, cl, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: "late"}}); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	tmpl := func(app string) *apiv1.PodTemplateSpec {
		return &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"app": app}},
			Spec: &apiv1.PodSpec{ServiceAccountName: "robot", Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
	}
	sel := func(app string) *apiv1.LabelSelector {
		return &apiv1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	meta := func(name string) *apiv1.ObjectMeta { return &apiv1.ObjectMeta{Namespace: "late", Name: name} }
	never := "Never"
	job := tmpl("job")
	job.Spec.RestartPolicy = never
	for _, o := range []client.Object{
		&apiv1.Deployment{Metadata: meta("web"), Spec: &apiv1.DeploymentSpec{Replicas: &one, Selector: sel("web"), Template: tmpl("web")}},
		&apiv1.Job{Metadata: meta("batch"), Spec: &apiv1.JobSpec{Template: job}},
		&apiv1.StatefulSet{Metadata: meta("db"), Spec: &apiv1.StatefulSetSpec{Replicas: &one, Selector: sel("db"), ServiceName: "db", Template: tmpl("db")}},
	} {
		if _, err := client.Create(ctx, cl, o); err != nil {
			t.Fatalf("create %s: %v", client.KindOf(o), err)
		}
	}
	// Each controller tried and was refused with Kubernetes' words.
	refused := func(kind string) func() bool {
		return func() bool {
			evs, _, err := client.List[*apiv1.Event](ctx, cl, client.ListOptions{Namespace: "late"})
			if err != nil {
				return false
			}
			for _, e := range evs {
				if e.GetInvolvedObject().GetKind() == kind && e.GetReason() == "FailedCreate" &&
					strings.Contains(e.GetMessage(), `error looking up service account late/robot: serviceaccount "robot" not found`) {
					return true
				}
			}
			return false
		}
	}
	for _, kind := range []string{"ReplicaSet", "Job", "StatefulSet"} {
		testutil.WaitFor(t, 30*time.Second, kind+" FailedCreate naming the missing service account", refused(kind))
	}
	pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "late"})
	if err != nil || len(pods) != 0 {
		t.Fatalf("pods before the account exists: %d (%v), want none", len(pods), err)
	}
	if _, err := client.Create(ctx, cl, &apiv1.ServiceAccount{Metadata: meta("robot")}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 45*time.Second, "every workload's pod once the account exists", func() bool {
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "late"})
		if err != nil {
			return false
		}
		apps := map[string]bool{}
		for _, p := range pods {
			apps[p.GetMetadata().GetLabels()["app"]] = p.GetSpec().GetServiceAccountName() == "robot"
		}
		return apps["web"] && apps["job"] && apps["db"]
	})
}
