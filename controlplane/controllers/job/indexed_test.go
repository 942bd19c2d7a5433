package job_test

import (
	"context"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/job"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/hollow"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestIndexedJobAndPodFailurePolicy on hollow nodes: an Indexed Job runs
// one pod per index 0..4, each with the index in its annotation, label and
// JOB_COMPLETION_INDEX, and completes with completedIndexes "0-4". A Job
// whose pods exit 42 fails at once through a FailJob rule (reason
// PodFailurePolicy) instead of retrying up to its backoffLimit; one whose
// failures an Ignore rule matches never counts them.
func TestIndexedJobAndPodFailurePolicy(t *testing.T) {
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
	idx := newJob("idx")
	idx.Spec.Completions, idx.Spec.Parallelism = i32(5), i32(3)
	mode := "Indexed"
	idx.Spec.CompletionMode = &mode
	idx.Spec.Template.Metadata.Annotations = map[string]string{hollow.ExitCodeAnnotation: "0"}
	if _, err := client.Create(ctx, cl, idx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "indexed job Complete with indexes 0-4", func() bool {
		j := get("idx")
		return condition(j, job.CondComplete) != nil && j.GetStatus().GetCompletedIndexes() == "0-4" && j.GetStatus().GetSucceeded() == 5
	})
	pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "job=idx"})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, p := range pods {
		a := p.GetMetadata().GetAnnotations()[job.CompletionIndexAnnotation]
		if p.GetMetadata().GetLabels()[job.CompletionIndexAnnotation] != a {
			t.Errorf("pod %s: label and annotation disagree", p.GetMetadata().GetName())
		}
		env := ""
		for _, e := range p.GetSpec().GetContainers()[0].GetEnv() {
			if e.GetName() == job.CompletionIndexEnv {
				env = e.GetValue()
			}
		}
		if env != a {
			t.Errorf("pod %s: %s=%q, annotation %q", p.GetMetadata().GetName(), job.CompletionIndexEnv, env, a)
		}
		i, _ := strconv.Atoi(a)
		got = append(got, i)
	}
	sort.Ints(got)
	if len(got) != 5 || got[0] != 0 || got[4] != 4 {
		t.Fatalf("pod indexes %v, want one pod per index 0..4", got)
	}

	policy := func(name, action string) *apiv1.Job {
		j := newJob(name)
		j.Spec.BackoffLimit = i32(6)
		j.Spec.Template.Metadata.Annotations = map[string]string{hollow.ExitCodeAnnotation: "42"}
		j.Spec.PodFailurePolicy = &apiv1.PodFailurePolicy{Rules: []*apiv1.PodFailurePolicyRule{{Action: action,
			OnExitCodes: &apiv1.PodFailurePolicyOnExitCodesRequirement{Operator: "In", Values: []int32{42}}}}}
		return j
	}
	if _, err := client.Create(ctx, cl, policy("failjob", job.ActionFailJob)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "failjob Failed by the pod failure policy", func() bool {
		c := condition(get("failjob"), job.CondFailed)
		return c != nil && c.GetReason() == job.ReasonPodFailurePolicy
	})
	if f := get("failjob").GetStatus().GetFailed(); f != 1 {
		t.Errorf("failjob: %d failures counted, want 1 (the Job fails at the first)", f)
	}
	ignore := policy("ignore", job.ActionIgnore)
	ignore.Spec.BackoffLimit = i32(0)
	if _, err := client.Create(ctx, cl, ignore); err != nil {
		t.Fatal(err)
	}
	// With backoffLimit 0, one counted failure would fail the Job; the
	// ignored ones keep it running, each replaced by a new pod.
	testutil.WaitFor(t, 60*time.Second, "ignore: 3 failed pods, none counted", func() bool {
		failed := 0
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default", LabelSelector: "job=ignore"})
		if err != nil {
			return false
		}
		for _, p := range pods {
			if p.GetStatus().GetPhase() == "Failed" {
				failed++
			}
		}
		return failed >= 3
	})
	j := get("ignore")
	if condition(j, job.CondFailed) != nil || j.GetStatus().GetFailed() != 0 {
		t.Fatalf("ignore: failures counted (%d) or the Job failed: %v", j.GetStatus().GetFailed(), j.GetStatus())
	}
	// A policy that does not validate names the field.
	bad := policy("bad", job.ActionFailJob)
	bad.Spec.Template.Spec.RestartPolicy = "OnFailure"
	if _, err := client.Create(ctx, cl, bad); err == nil {
		t.Fatal("a podFailurePolicy with restartPolicy OnFailure was accepted")
	}
}
