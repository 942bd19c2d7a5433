package cli_test

import (
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestScaleFollowsKindHooks: `ctl scale` takes the kinds whose
// registration has a Replicas hook, reads the current count through it,
// and refuses the others naming the ones it takes.
func TestScaleFollowsKindHooks(t *testing.T) {
	e := newEnv(t, 1)
	cl, ctx := e.apiClient()
	labels := map[string]string{"app": "rs"}
	rs := &apiv1.ReplicaSet{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "rs"},
		Spec: &apiv1.ReplicaSetSpec{Selector: &apiv1.LabelSelector{MatchLabels: labels},
			Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: labels},
				Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}}}
	if _, err := client.Create(ctx, cl, rs); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := e.ctl("", "scale", "rs", "rs", "--replicas=3", "--current-replicas=2"); code == 0 || !strings.Contains(errs, "expected 2 replicas, rs has 1") {
		t.Fatalf("scale with a wrong current count: exit %d: %s", code, errs)
	}
	if out := e.mustCtl("scale", "rs", "rs", "--replicas=3", "--current-replicas=1"); out != "replicaset.apps/rs scaled\n" {
		t.Fatalf("scale: %q", out)
	}
	got, err := client.Get[*apiv1.ReplicaSet](ctx, cl, "default", "rs")
	if err != nil || got.GetSpec().GetReplicas() != 3 {
		t.Fatalf("replicas after scale: %d %v", got.GetSpec().GetReplicas(), err)
	}
	_, errs, code := e.ctl("", "scale", "pod", "p", "--replicas=1")
	if code == 0 || !strings.Contains(errs, "Pod cannot be scaled (Deployment, ReplicaSet, ReplicationController, StatefulSet can)") {
		t.Fatalf("scale a pod: exit %d: %s", code, errs)
	}
}
