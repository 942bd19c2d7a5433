package job

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Labels Kubernetes puts on Job pods.
const (
	JobNameLabel       = "batch.kubernetes.io/job-name"
	LegacyJobNameLabel = "job-name"
	ControllerUIDLabel = "batch.kubernetes.io/controller-uid"
)

// Condition types and reasons.
const (
	CondComplete           = "Complete"
	CondFailed             = "Failed"
	CondSuspended          = "Suspended"
	ReasonBackoffLimit     = "BackoffLimitExceeded"
	ReasonDeadlineExceeded = "DeadlineExceeded"
)

// Controller reconciles Jobs.
type Controller struct {
	*ctrlkit.Base
	jobs *ctrlkit.Cache
	pods *ctrlkit.Cache
	rec  *client.Recorder
}

// New returns the Job controller.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{}
	c.Base = ctrlkit.NewBase("job-controller", cfg, c.sync)
	c.rec = client.NewRecorder(cfg.Client, "job-controller", "")
	c.jobs = c.Watch("Job", c.EnqueueHandler())
	owner := func(o client.Object) {
		md := o.GetMetadata()
		if ref := ctrlkit.ControllerOf(md); ref != nil && ref.GetKind() == "Job" {
			c.EnqueueKey(md.GetNamespace() + "/" + ref.GetName())
		}
	}
	c.pods = c.Watch("Pod", client.EventHandler{OnAdd: owner, OnDelete: owner, OnUpdate: func(_, o client.Object) { owner(o) }}).Indexed(ctrlkit.ByOwner)
	return c
}

// NewLoop builds the controller for the registry (config: a ctrlkit.Config
// under "job").
var NewLoop = ctrlkit.Factory("job", New)

// Finished reports whether a Job has its Complete or Failed condition.
func Finished(j *apiv1.Job) (done bool, condType string) {
	for _, c := range j.GetStatus().GetConditions() {
		if (c.GetType() == CondComplete || c.GetType() == CondFailed) && c.GetStatus() == "True" {
			return true, c.GetType()
		}
	}
	return false, ""
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := ctrlkit.SplitKey(key)
	obj, ok := c.jobs.Get(ns, name)
	if !ok {
		return nil
	}
	j := obj.(*apiv1.Job)
	var active, succeeded, failed []*apiv1.Pod
	for _, p := range ctrlkit.OwnedPods(c.pods, j.GetMetadata().GetUid(), "") {
		switch p.GetStatus().GetPhase() {
		case ctrlkit.PodSucceeded:
			succeeded = append(succeeded, p)
		case ctrlkit.PodFailed:
			failed = append(failed, p)
		default:
			if !ctrlkit.IsPodTerminating(p) {
				active = append(active, p)
			}
		}
	}
	now := c.Now().UTC()
	ts := now.Format(time.RFC3339)
	st := codec.Clone(j.GetStatus())
	if st == nil {
		st = &apiv1.JobStatus{}
	}
	spec := j.GetSpec()
	// The pod failure policy decides which failures count (Ignore: not)
	// and whether one fails the Job at once (FailJob).
	counted, failJob := failed, ""
	if policy := spec.GetPodFailurePolicy(); policy != nil {
		counted = nil
		for _, p := range failed {
			switch v := judgeFailure(policy, p); v.action {
			case ActionIgnore:
			case ActionFailJob:
				if failJob == "" {
					failJob = v.msg
				}
				counted = append(counted, p)
			default:
				counted = append(counted, p)
			}
		}
	}
	nSucceeded := len(succeeded)
	var doneIdx map[int]bool
	if isIndexed(j) {
		doneIdx = succeededIndexes(succeeded, spec.GetCompletions())
		nSucceeded = len(doneIdx)
		st.CompletedIndexes = formatIndexes(doneIdx)
	}
	// Counts never go down: finished pods may be deleted by users or GC.
	st.Succeeded = max(st.GetSucceeded(), int32(nSucceeded))
	st.Failed = max(st.GetFailed(), int32(len(counted)))
	var errs []error
	done, _ := Finished(j)
	if done {
		errs = append(errs, c.deleteAll(ctx, active))
		active = nil
		if err := c.expire(ctx, j); err != nil {
			errs = append(errs, err)
		}
	} else if j.GetMetadata().GetDeletionTimestamp() == "" {
		if spec.GetSuspend() {
			errs = append(errs, c.deleteAll(ctx, active))
			active = nil
			setCondition(st, CondSuspended, "True", "JobSuspended", "Job suspended", ts)
		} else {
			if st.StartTime == "" {
				st.StartTime = ts
			}
			setCondition(st, CondSuspended, "False", "JobResumed", "Job resumed", ts)
			completions := spec.Completions
			switch {
			case failJob != "":
				errs = append(errs, c.deleteAll(ctx, active))
				active = nil
				c.fail(ctx, j, st, ReasonPodFailurePolicy, failJob, ts)
			case spec.BackoffLimit != nil && st.Failed > *spec.BackoffLimit:
				errs = append(errs, c.deleteAll(ctx, active))
				active = nil
				c.fail(ctx, j, st, ReasonBackoffLimit, "Job has reached the specified backoff limit", ts)
			case c.deadlineExceeded(j, st, now):
				errs = append(errs, c.deleteAll(ctx, active))
				active = nil
				c.fail(ctx, j, st, ReasonDeadlineExceeded, "Job was active longer than specified deadline", ts)
			case (completions != nil && st.Succeeded >= *completions) || (completions == nil && st.Succeeded > 0 && len(active) == 0):
				setCondition(st, CondComplete, "True", "", "", ts)
				st.CompletionTime = ts
				c.event(ctx, j, client.EventNormal, "Completed", "Job completed")
				c.EnqueueKey(key) // for ttlSecondsAfterFinished
			default:
				want := spec.GetParallelism()
				if completions != nil {
					want = min(want, *completions-st.Succeeded)
				} else if st.Succeeded > 0 {
					want = 0 // one success: let the rest finish, start no more
				}
				if n := int(want) - len(active); n > 0 {
					var indexes []int
					if isIndexed(j) {
						indexes = indexesToRun(*completions, doneIdx, active, n)
						n = len(indexes)
					}
					errs = append(errs, c.create(ctx, j, n, indexes))
				} else if n < 0 {
					ctrlkit.DeletionOrder(active)
					errs = append(errs, c.deleteAll(ctx, active[:-n]))
					active = active[-n:]
				}
			}
		}
	}
	st.Active = int32(len(active))
	var ready int32
	for _, p := range active {
		if ctrlkit.IsPodReady(p) {
			ready++
		}
	}
	st.Ready = &ready
	if !proto.Equal(st, j.GetStatus()) {
		next := codec.Clone(j)
		next.Status = st
		if _, err := ctrlkit.UpdateStatus(ctx, c.Client(), c.jobs, next); err != nil && !client.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) deadlineExceeded(j *apiv1.Job, st *apiv1.JobStatus, now time.Time) bool {
	d := j.GetSpec().ActiveDeadlineSeconds
	if d == nil {
		return false
	}
	start, err := time.Parse(time.RFC3339, st.GetStartTime())
	if err != nil {
		return false
	}
	left := start.Add(time.Duration(*d) * time.Second).Sub(now)
	if left > 0 {
		c.EnqueueAfter(client.Key(j), left)
		return false
	}
	return true
}

func (c *Controller) fail(ctx context.Context, j *apiv1.Job, st *apiv1.JobStatus, reason, msg, ts string) {
	setCondition(st, CondFailed, "True", reason, msg, ts)
	c.event(ctx, j, client.EventWarning, reason, msg)
}

func setCondition(st *apiv1.JobStatus, typ, status, reason, msg, ts string) {
	for _, cond := range st.Conditions {
		if cond.GetType() == typ {
			if cond.GetStatus() != status {
				cond.LastTransitionTime = ts
			}
			cond.Status, cond.Reason, cond.Message = status, reason, msg
			return
		}
	}
	if typ == CondSuspended && status == "False" {
		return // never suspended: no condition
	}
	st.Conditions = append(st.Conditions, &apiv1.JobCondition{Type: typ, Status: status, Reason: reason, Message: msg,
		LastProbeTime: ts, LastTransitionTime: ts})
}

// create starts n pods; indexes, for an Indexed Job, gives each its
// completion index.
func (c *Controller) create(ctx context.Context, j *apiv1.Job, n int, indexes []int) error {
	if n <= 0 {
		return nil
	}
	index := map[string]int{}
	md := j.GetMetadata()
	names := ctrlkit.NextNames(md.GetName(), md.GetUid(), n, func(name string) bool {
		return c.pods.Has(md.GetNamespace(), name)
	})
	tmpl := codec.Clone(j.GetSpec().GetTemplate())
	if tmpl.Metadata == nil {
		tmpl.Metadata = &apiv1.ObjectMeta{}
	}
	if tmpl.Metadata.Labels == nil {
		tmpl.Metadata.Labels = map[string]string{}
	}
	tmpl.Metadata.Labels[JobNameLabel] = md.GetName()
	tmpl.Metadata.Labels[LegacyJobNameLabel] = md.GetName()
	tmpl.Metadata.Labels[ControllerUIDLabel] = md.GetUid()
	for i, name := range names {
		if i < len(indexes) {
			index[name] = indexes[i]
		}
	}
	ref := ctrlkit.ControllerRef(j, "batch/v1")
	// Slow-start waves, each one call: a Job of parallelism 1,000 starts in
	// ten calls, and a quota refusal costs one.
	created, err := ctrlkit.SlowStartBatches(names, func(batch []string) ([]error, error) {
		pods := make([]*apiv1.Pod, len(batch))
		for i, name := range batch {
			pods[i] = ctrlkit.PodFromTemplate(tmpl, md.GetNamespace(), name, ref)
			if ix, ok := index[name]; ok {
				setIndex(pods[i], ix)
			}
		}
		return ctrlkit.CreateMany(ctx, c.Client(), c.pods, pods)
	})
	if len(created) > 0 {
		c.event(ctx, j, client.EventNormal, "SuccessfulCreate", "Created pod(s): "+strings.Join(created, ", "))
	}
	if err != nil {
		// As Kubernetes' job controller: say why, then retry with backoff
		// (a missing service account, a quota).
		c.event(ctx, j, client.EventWarning, "FailedCreate", "Error creating: "+client.Reason(err))
		return fmt.Errorf("create pods: %w", err)
	}
	return nil
}

func (c *Controller) deleteAll(ctx context.Context, pods []*apiv1.Pod) error {
	var errs []error
	for _, p := range pods {
		if err := ctrlkit.Delete(ctx, c.Client(), c.pods, p, ""); err != nil {
			errs = append(errs, fmt.Errorf("delete pod %s: %w", p.GetMetadata().GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// expire deletes a finished Job ttlSecondsAfterFinished after it finished.
func (c *Controller) expire(ctx context.Context, j *apiv1.Job) error {
	ttl := j.GetSpec().TtlSecondsAfterFinished
	if ttl == nil || j.GetMetadata().GetDeletionTimestamp() != "" {
		return nil
	}
	var end time.Time
	for _, cond := range j.GetStatus().GetConditions() {
		if cond.GetType() == CondComplete || cond.GetType() == CondFailed {
			end, _ = time.Parse(time.RFC3339, cond.GetLastTransitionTime())
		}
	}
	if left := end.Add(time.Duration(*ttl) * time.Second).Sub(c.Now()); left > 0 {
		c.EnqueueAfter(client.Key(j), left)
		return nil
	}
	return ctrlkit.Delete(ctx, c.Client(), c.jobs, j, "Background")
}

func (c *Controller) event(ctx context.Context, obj client.Object, typ, reason, msg string) {
	if err := c.rec.Event(ctx, obj, typ, reason, msg); err != nil {
		c.Log.Debug("record event", "err", err)
	}
}
