package job_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/controlplane/controllers/job"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/hollow"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// Jobs on a 3-node control plane with hollow nodes, whose pods run to
// completion (hollow.ExitCodeAnnotation): the scheduler places them, the
// hollow agents finish them, the Job controller counts and completes.
func TestJobsOnHollowNodes(t *testing.T) {
	c := cptest.Start(t, cptest.Options{HollowNodes: 3, Loops: []string{"scheduler", "job"}})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	get := func(name string) *apiv1.Job {
		j, err := client.Get[*apiv1.Job](ctx, cl, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}

	var mu sync.Mutex
	maxActive := 0
	nodes := map[string]bool{}
	ctrltest.WatchPods(t, cl, "default", "job=ok", func(pods map[string]*apiv1.Pod) {
		active, _ := ctrltest.Counts(pods)
		mu.Lock()
		defer mu.Unlock()
		maxActive = max(maxActive, active)
		for _, p := range pods {
			if n := p.GetSpec().GetNodeName(); n != "" {
				nodes[n] = true
			}
		}
	})
	ok := newJob("ok")
	ok.Spec.Completions, ok.Spec.Parallelism = i32(6), i32(3)
	ok.Spec.Template.Metadata.Annotations = map[string]string{hollow.ExitCodeAnnotation: "0"}
	if _, err := client.Create(ctx, cl, ok); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "job ok Complete with 6 succeeded", func() bool {
		j := get("ok")
		return condition(j, job.CondComplete) != nil && j.GetStatus().GetSucceeded() == 6 && j.GetStatus().GetActive() == 0
	})
	pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "job=ok"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		// A finished pod stays finished: the hollow agent does not restart it.
		if p.GetStatus().GetPhase() != "Succeeded" || p.GetStatus().GetContainerStatuses()[0].GetState().GetTerminated().GetExitCode() != 0 {
			t.Errorf("pod %s: phase %s, container %v", p.GetMetadata().GetName(), p.GetStatus().GetPhase(), p.GetStatus().GetContainerStatuses())
		}
	}
	if len(pods) != 6 {
		t.Errorf("%d pods made, want exactly 6", len(pods))
	}
	mu.Lock()
	if maxActive > 3 || len(nodes) < 2 {
		t.Errorf("max %d pods active (parallelism 3), spread over %d nodes (want ≥ 2)", maxActive, len(nodes))
	}
	mu.Unlock()

	bad := newJob("bad")
	bad.Spec.BackoffLimit = i32(2)
	bad.Spec.Template.Metadata.Annotations = map[string]string{hollow.ExitCodeAnnotation: "3"}
	if _, err := client.Create(ctx, cl, bad); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "job bad Failed with BackoffLimitExceeded", func() bool {
		cond := condition(get("bad"), job.CondFailed)
		return cond != nil && cond.GetReason() == job.ReasonBackoffLimit
	})
	failed, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "job=bad"})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 3 || get("bad").GetStatus().GetFailed() != 3 {
		t.Errorf("backoffLimit 2: %d pods and failed=%d, want 3 and 3", len(failed), get("bad").GetStatus().GetFailed())
	}
}
