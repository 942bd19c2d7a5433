package job_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/controlplane/controllers/job"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func i32(v int32) *int32 { return &v }

func newJob(name string) *apiv1.Job {
	return &apiv1.Job{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &apiv1.JobSpec{Template: &apiv1.PodTemplateSpec{Metadata: &apiv1.ObjectMeta{Labels: map[string]string{"job": name}},
			Spec: &apiv1.PodSpec{RestartPolicy: "Never", Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}}}
}

func start(t *testing.T) *ctrltest.Env {
	e := ctrltest.Start(t)
	cfg := ctrlkit.DefaultConfig(e.Client)
	cfg.Resync = 500 * time.Millisecond
	e.Run(job.New(cfg))
	return e
}

func getJob(e *ctrltest.Env, name string) *apiv1.Job {
	j, err := client.Get[*apiv1.Job](e.Ctx(5*time.Second), e.Client, "default", name)
	if err != nil {
		e.T.Fatal(err)
	}
	return j
}

func condition(j *apiv1.Job, typ string) *apiv1.JobCondition {
	for _, c := range j.GetStatus().GetConditions() {
		if c.GetType() == typ && c.GetStatus() == "True" {
			return c
		}
	}
	return nil
}

// finishOne sets the phase of one active pod of the job.
func finishOne(e *ctrltest.Env, name, phase string) bool {
	for _, p := range e.ActivePods("default", "job="+name) {
		if p.GetStatus().GetPhase() == "" || p.GetStatus().GetPhase() == "Pending" || p.GetStatus().GetPhase() == "Running" {
			return ctrltest.SetPhase(context.Background(), e.Client, p, phase, false) == nil
		}
	}
	return false
}

// TestJobCompletionsWithParallelism: completions 5, parallelism 2: never
// more than 2 pods running, and the Job completes after the 5th success.
func TestJobCompletionsWithParallelism(t *testing.T) {
	e := start(t)
	var mu sync.Mutex
	maxActive := 0
	e.PodWatch("default", "job=batch", func(pods map[string]*apiv1.Pod) {
		active, _ := ctrltest.Counts(pods)
		mu.Lock()
		maxActive = max(maxActive, active)
		mu.Unlock()
	})
	j := newJob("batch")
	j.Spec.Completions, j.Spec.Parallelism = i32(5), i32(2)
	if _, err := client.Create(e.Ctx(5*time.Second), e.Client, j); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		testutil.WaitFor(t, 10*time.Second, "a pod to finish", func() bool {
			want := min(2, 5-i)
			return len(e.ActivePods("default", "job=batch")) == want && finishOne(e, "batch", "Succeeded")
		})
	}
	testutil.WaitFor(t, 10*time.Second, "Complete", func() bool {
		cur := getJob(e, "batch")
		return condition(cur, job.CondComplete) != nil && cur.GetStatus().GetSucceeded() == 5 && cur.GetStatus().GetCompletionTime() != ""
	})
	if n := len(e.Pods("default", "job=batch")); n != 5 {
		t.Fatalf("%d pods made, want exactly 5", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxActive != 2 {
		t.Fatalf("max %d pods active at once, want parallelism 2", maxActive)
	}
}

// TestJobBackoffLimit: with backoffLimit 1, the second failure fails the
// Job and no more pods are made.
func TestJobBackoffLimit(t *testing.T) {
	e := start(t)
	j := newJob("flaky")
	j.Spec.BackoffLimit = i32(1)
	if _, err := client.Create(e.Ctx(5*time.Second), e.Client, j); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		testutil.WaitFor(t, 10*time.Second, "a pod to fail", func() bool { return finishOne(e, "flaky", "Failed") })
		testutil.WaitFor(t, 10*time.Second, "failure counted", func() bool { return getJob(e, "flaky").GetStatus().GetFailed() == int32(i+1) })
	}
	testutil.WaitFor(t, 10*time.Second, "Failed BackoffLimitExceeded", func() bool {
		c := condition(getJob(e, "flaky"), job.CondFailed)
		return c != nil && c.GetReason() == job.ReasonBackoffLimit
	})
	if n := len(e.Pods("default", "job=flaky")); n != 2 {
		t.Fatalf("%d pods, want 2 (no replacement after the limit)", n)
	}
}

// TestJobActiveDeadline: a Job running past activeDeadlineSeconds fails
// with DeadlineExceeded and its running pods are deleted.
func TestJobActiveDeadline(t *testing.T) {
	e := start(t)
	j := newJob("slow")
	j.Spec.Parallelism, j.Spec.Completions = i32(2), i32(2)
	d := int64(1)
	j.Spec.ActiveDeadlineSeconds = &d
	if _, err := client.Create(e.Ctx(5*time.Second), e.Client, j); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "2 pods", func() bool { return len(e.ActivePods("default", "job=slow")) == 2 })
	testutil.WaitFor(t, 10*time.Second, "Failed DeadlineExceeded, pods gone", func() bool {
		c := condition(getJob(e, "slow"), job.CondFailed)
		return c != nil && c.GetReason() == job.ReasonDeadlineExceeded && len(e.ActivePods("default", "job=slow")) == 0
	})
}

// TestJobSuspendAndTTL: a suspended Job has no pods; resumed and done,
// ttlSecondsAfterFinished 0 deletes it.
func TestJobSuspendAndTTL(t *testing.T) {
	e := start(t)
	j := newJob("later")
	yes, zero := true, int32(0)
	j.Spec.Suspend, j.Spec.TtlSecondsAfterFinished = &yes, &zero
	if _, err := client.Create(e.Ctx(5*time.Second), e.Client, j); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "Suspended", func() bool { return condition(getJob(e, "later"), job.CondSuspended) != nil })
	if n := len(e.Pods("default", "job=later")); n != 0 {
		t.Fatalf("suspended job has %d pods", n)
	}
	if _, err := client.Patch[*apiv1.Job](e.Ctx(5*time.Second), e.Client, "default", "later", []byte(`{"spec":{"suspend":false}}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "pod succeeds", func() bool { return finishOne(e, "later", "Succeeded") })
	testutil.WaitFor(t, 10*time.Second, "finished job deleted by TTL", func() bool {
		_, err := client.Get[*apiv1.Job](e.Ctx(5*time.Second), e.Client, "default", "later")
		return client.IsNotFound(err)
	})
}
