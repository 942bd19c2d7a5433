package cronjob_test

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/cronjob"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit/ctrltest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

func jobNames(e *ctrltest.Env, activeOnly bool) []string {
	jobs, _, err := client.List[*apiv1.Job](e.Ctx(5*time.Second), e.Client, client.ListOptions{Namespace: "default"})
	if err != nil {
		e.T.Fatal(err)
	}
	var out []string
	for _, j := range jobs {
		if j.GetMetadata().GetDeletionTimestamp() != "" {
			continue
		}
		done := false
		for _, c := range j.GetStatus().GetConditions() {
			done = done || (c.GetType() == "Complete" && c.GetStatus() == "True")
		}
		if !activeOnly || !done {
			out = append(out, j.GetMetadata().GetName())
		}
	}
	sort.Strings(out)
	return out
}

func complete(e *ctrltest.Env, name string) {
	e.T.Helper()
	j, err := client.Get[*apiv1.Job](e.Ctx(5*time.Second), e.Client, "default", name)
	if err != nil {
		e.T.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	j.Status = &apiv1.JobStatus{Succeeded: 1, CompletionTime: now,
		Conditions: []*apiv1.JobCondition{{Type: "Complete", Status: "True", LastTransitionTime: now}}}
	if _, err := client.UpdateStatus(e.Ctx(5*time.Second), e.Client, j); err != nil {
		e.T.Fatal(err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCronJobPolicies runs a per-minute CronJob on a test clock: a run at
// each minute, Forbid skips while a Job runs (and runs it once the Job is
// done), Replace deletes the running Job, Allow runs them side by side,
// the successful history limit trims old Jobs, suspend stops runs.
func TestCronJobPolicies(t *testing.T) {
	e := ctrltest.Start(t)
	clk := &clock{now: time.Now()}
	cfg := ctrlkit.DefaultConfig(e.Client)
	cfg.Now, cfg.Resync = clk.Now, 100*time.Millisecond
	e.Run(cronjob.New(cfg))
	one := int32(1)
	cj := &apiv1.CronJob{Metadata: &apiv1.ObjectMeta{Name: "tick", Namespace: "default"},
		Spec: &apiv1.CronJobSpec{Schedule: "* * * * *", ConcurrencyPolicy: "Forbid", SuccessfulJobsHistoryLimit: &one,
			JobTemplate: &apiv1.JobTemplateSpec{Spec: &apiv1.JobSpec{Template: &apiv1.PodTemplateSpec{
				Spec: &apiv1.PodSpec{RestartPolicy: "Never", Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}}}}}
	created, err := client.Create(e.Ctx(5*time.Second), e.Client, cj)
	if err != nil {
		t.Fatal(err)
	}
	start, _ := time.Parse(time.RFC3339, created.GetMetadata().GetCreationTimestamp())
	minute := func(n int) time.Time { return start.Truncate(time.Minute).Add(time.Duration(n) * time.Minute) }
	name := func(n int) string { return cronjob.JobName("tick", minute(n)) }
	patch := func(p string) {
		t.Helper()
		if _, err := client.Patch[*apiv1.CronJob](e.Ctx(5*time.Second), e.Client, "default", "tick", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	waitJobs := func(what string, activeOnly bool, want ...string) {
		t.Helper()
		sort.Strings(want)
		var got []string
		if !testutil.Eventually(10*time.Second, func() bool { got = jobNames(e, activeOnly); return equal(got, want) }) {
			t.Fatalf("%s: jobs %v, want %v", what, got, want)
		}
	}
	// holdJobs checks that the jobs stay exactly want through several
	// resyncs (300 ms), not just at one look after a pause.
	holdJobs := func(what string, want ...string) {
		t.Helper()
		sort.Strings(want)
		var got []string
		if testutil.Eventually(300*time.Millisecond, func() bool { got = jobNames(e, false); return !equal(got, want) }) {
			t.Fatalf("%s: jobs %v, want %v", what, got, want)
		}
	}

	clk.set(minute(1).Add(5 * time.Second))
	waitJobs("first run", false, name(1))
	testutil.WaitFor(t, 5*time.Second, "status: active and lastScheduleTime", func() bool {
		cur, err := client.Get[*apiv1.CronJob](e.Ctx(5*time.Second), e.Client, "default", "tick")
		return err == nil && len(cur.GetStatus().GetActive()) == 1 && cur.GetStatus().GetLastScheduleTime() == minute(1).UTC().Format(time.RFC3339)
	})

	clk.set(minute(2).Add(5 * time.Second))
	holdJobs("Forbid while the first runs", name(1))
	complete(e, name(1))
	waitJobs("the skipped run starts once the first is done", true, name(2))

	patch(`{"spec":{"concurrencyPolicy":"Replace"}}`)
	clk.set(minute(3).Add(5 * time.Second))
	waitJobs("Replace deletes the running job", true, name(3))

	patch(`{"spec":{"concurrencyPolicy":"Allow"}}`)
	clk.set(minute(4).Add(5 * time.Second))
	waitJobs("Allow runs side by side", true, name(3), name(4))

	complete(e, name(3))
	complete(e, name(4))
	waitJobs("history limit 1 keeps the newest successful job", false, name(4))

	patch(`{"spec":{"suspend":true}}`)
	clk.set(minute(5).Add(5 * time.Second))
	holdJobs("suspended: no run", name(4))
}
