package cronjob_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/cronjob"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/hollow"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// A CronJob on a 3-node control plane with hollow nodes: each scheduled
// run makes a Job whose pod the scheduler places and a hollow agent runs
// to completion; the Job completes and the history limit keeps the newest.
func TestCronJobOnHollowNodes(t *testing.T) {
	clk := &clock{now: time.Now()}
	cfg := ctrlkit.DefaultConfig(nil)
	cfg.Now, cfg.Resync = clk.Now, 100*time.Millisecond
	c := cptest.Start(t, cptest.Options{HollowNodes: 3, Loops: []string{"scheduler", "job", "cronjob"},
		Configs: map[string]any{"cronjob": cfg}})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	one := int32(1)
	cj := &apiv1.CronJob{Metadata: &apiv1.ObjectMeta{Name: "tick", Namespace: "default"},
		Spec: &apiv1.CronJobSpec{Schedule: "* * * * *", ConcurrencyPolicy: "Forbid", SuccessfulJobsHistoryLimit: &one,
			JobTemplate: &apiv1.JobTemplateSpec{Spec: &apiv1.JobSpec{Template: &apiv1.PodTemplateSpec{
				Metadata: &apiv1.ObjectMeta{Annotations: map[string]string{hollow.ExitCodeAnnotation: "0"}},
				Spec:     &apiv1.PodSpec{RestartPolicy: "Never", Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}}}}}
	created, err := client.Create(ctx, cl, cj)
	if err != nil {
		t.Fatal(err)
	}
	start, _ := time.Parse(time.RFC3339, created.GetMetadata().GetCreationTimestamp())
	minute := func(n int) time.Time { return start.Truncate(time.Minute).Add(time.Duration(n) * time.Minute) }
	name := func(n int) string { return cronjob.JobName("tick", minute(n)) }
	completed := func(name string) bool {
		j, err := client.Get[*apiv1.Job](ctx, cl, "default", name)
		if err != nil {
			return false
		}
		for _, c := range j.GetStatus().GetConditions() {
			if c.GetType() == "Complete" && c.GetStatus() == "True" {
				return j.GetStatus().GetSucceeded() == 1
			}
		}
		return false
	}
	for n := 1; n <= 2; n++ {
		clk.set(minute(n).Add(5 * time.Second))
		testutil.WaitFor(t, 30*time.Second, name(n)+" made, run on a hollow node and Complete", func() bool { return completed(name(n)) })
	}
	testutil.WaitFor(t, 30*time.Second, "history limit 1: only the newest Job is kept, status has no active run", func() bool {
		cur, err := client.Get[*apiv1.CronJob](ctx, cl, "default", "tick")
		if err != nil || len(cur.GetStatus().GetActive()) != 0 || cur.GetStatus().GetLastSuccessfulTime() == "" {
			return false
		}
		jobs, _, err := client.List[*apiv1.Job](ctx, cl, client.ListOptions{Namespace: "default"})
		live := 0
		for _, j := range jobs {
			if j.GetMetadata().GetDeletionTimestamp() == "" {
				live++
			}
		}
		return err == nil && live == 1 && completed(name(2))
	})
	pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.GetSpec().GetNodeName() == "" || p.GetStatus().GetPhase() != "Succeeded" {
			t.Errorf("pod %s: node %q phase %s, want placed and Succeeded", p.GetMetadata().GetName(), p.GetSpec().GetNodeName(), p.GetStatus().GetPhase())
		}
	}
}
