package cronjob

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/job"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// ScheduledAnnotation records the scheduled time a Job was made for.
const ScheduledAnnotation = "batch.kubernetes.io/cronjob-scheduled-timestamp"

// Controller reconciles CronJobs.
type Controller struct {
	*ctrlkit.Base
	crons *ctrlkit.Cache
	jobs  *ctrlkit.Cache
	rec   *client.Recorder
}

// New returns the CronJob controller.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{}
	c.Base = ctrlkit.NewBase("cronjob-controller", cfg, c.sync)
	c.rec = client.NewRecorder(cfg.Client, "cronjob-controller", "")
	c.crons = c.Watch("CronJob", c.EnqueueHandler())
	owner := func(o client.Object) {
		md := o.GetMetadata()
		if ref := ctrlkit.ControllerOf(md); ref != nil && ref.GetKind() == "CronJob" {
			c.EnqueueKey(md.GetNamespace() + "/" + ref.GetName())
		}
	}
	c.jobs = c.Watch("Job", client.EventHandler{OnAdd: owner, OnDelete: owner, OnUpdate: func(_, o client.Object) { owner(o) }}).Indexed(ctrlkit.ByOwner)
	return c
}

// NewLoop builds the controller for the registry (config: a ctrlkit.Config
// under "cronjob").
var NewLoop = ctrlkit.Factory("cronjob", New)

// JobName is the name of the Job of a run scheduled at t.
func JobName(cronJob string, t time.Time) string {
	return fmt.Sprintf("%s-%d", cronJob, t.Unix()/60)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339, s)
	return t
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := ctrlkit.SplitKey(key)
	obj, ok := c.crons.Get(ns, name)
	if !ok {
		return nil
	}
	cj := obj.(*apiv1.CronJob)
	var active, succeeded, failed []*apiv1.Job
	for _, o := range c.jobs.ByIndex(ctrlkit.OwnerKey(cj.GetMetadata().GetUid())) {
		j := o.(*apiv1.Job)
		switch _, cond := job.Finished(j); cond {
		case job.CondComplete:
			succeeded = append(succeeded, j)
		case job.CondFailed:
			failed = append(failed, j)
		default:
			if j.GetMetadata().GetDeletionTimestamp() == "" {
				active = append(active, j)
			}
		}
	}
	st := codec.Clone(cj.GetStatus())
	if st == nil {
		st = &apiv1.CronJobStatus{}
	}
	for _, j := range succeeded {
		if t := parseTime(j.GetStatus().GetCompletionTime()); t.After(parseTime(st.GetLastSuccessfulTime())) {
			st.LastSuccessfulTime = t.UTC().Format(time.RFC3339)
		}
	}
	var errs []error
	if cj.GetMetadata().GetDeletionTimestamp() == "" {
		var err error
		active, err = c.schedule(ctx, cj, st, active)
		errs = append(errs, err)
		errs = append(errs, c.trimHistory(ctx, cj, succeeded, failed))
	}
	st.Active = nil
	sort.Slice(active, func(i, k int) bool { return active[i].GetMetadata().GetName() < active[k].GetMetadata().GetName() })
	for _, j := range active {
		st.Active = append(st.Active, &apiv1.ObjectReference{Kind: "Job", ApiVersion: "batch/v1", Namespace: ns,
			Name: j.GetMetadata().GetName(), Uid: j.GetMetadata().GetUid(), ResourceVersion: j.GetMetadata().GetResourceVersion()})
	}
	if !proto.Equal(st, cj.GetStatus()) {
		next := codec.Clone(cj)
		next.Status = st
		if _, err := ctrlkit.UpdateStatus(ctx, c.Client(), c.crons, next); err != nil && !client.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// schedule starts the most recent due run, if any, and returns the active
// Jobs after it.
func (c *Controller) schedule(ctx context.Context, cj *apiv1.CronJob, st *apiv1.CronJobStatus, active []*apiv1.Job) ([]*apiv1.Job, error) {
	spec := cj.GetSpec()
	if spec.GetSuspend() {
		return active, nil
	}
	sched, err := ParseSchedule(spec.GetSchedule(), spec.GetTimeZone())
	if err != nil {
		c.event(ctx, cj, client.EventWarning, "UnparseableSchedule", err.Error())
		return active, nil // retrying will not help; a spec change requeues
	}
	now := c.Now()
	after := parseTime(st.GetLastScheduleTime())
	if after.IsZero() {
		after = parseTime(cj.GetMetadata().GetCreationTimestamp())
	}
	if d := spec.StartingDeadlineSeconds; d != nil {
		if earliest := now.Add(-time.Duration(*d) * time.Second); earliest.After(after) {
			after = earliest
		}
	}
	last, missed, next := mostRecent(sched, after, now)
	c.EnqueueAfter(client.Key(cj), next.Sub(now)+10*time.Millisecond)
	if last.IsZero() {
		return active, nil
	}
	if missed > tooManyMissed {
		c.event(ctx, cj, client.EventWarning, "TooManyMissedTimes", fmt.Sprintf("too many missed start times (%d): check the clock", missed))
	}
	name := JobName(cj.GetMetadata().GetName(), last)
	for _, j := range active {
		if j.GetMetadata().GetName() == name {
			st.LastScheduleTime = last.UTC().Format(time.RFC3339)
			return active, nil // this run exists already
		}
	}
	switch spec.GetConcurrencyPolicy() {
	case "Forbid":
		if len(active) > 0 {
			c.event(ctx, cj, client.EventNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
			return active, nil // the run stays due until the active Job ends
		}
	case "Replace":
		if len(active) > 0 {
			// Deleting a running Job cannot be undone: do it only on the
			// CronJob's current spec, not on a cache that may lag an edit
			// of the policy (the informer brings the newer one and requeues).
			cur, err := client.Get[*apiv1.CronJob](ctx, c.Client(), cj.GetMetadata().GetNamespace(), cj.GetMetadata().GetName())
			if err != nil {
				return active, fmt.Errorf("confirm policy before replacing: %w", err)
			}
			if cur.GetMetadata().GetResourceVersion() != cj.GetMetadata().GetResourceVersion() {
				return active, fmt.Errorf("cronjob changed since cached (resourceVersion %s, cached %s): not replacing on an old spec",
					cur.GetMetadata().GetResourceVersion(), cj.GetMetadata().GetResourceVersion())
			}
		}
		for _, j := range active {
			if err := ctrlkit.Delete(ctx, c.Client(), c.jobs, j, "Background"); err != nil {
				return active, fmt.Errorf("replace job %s: %w", j.GetMetadata().GetName(), err)
			}
			c.event(ctx, cj, client.EventNormal, "SuccessfulDelete", "Deleted job "+j.GetMetadata().GetName())
		}
		active = nil
	}
	created, err := c.createJob(ctx, cj, name, last)
	switch {
	case client.IsAlreadyExists(err):
		// Made by an earlier attempt (or leader); the cache will show it.
	case err != nil:
		c.event(ctx, cj, client.EventWarning, "FailedCreate", "Error creating job: "+client.Reason(err))
		return active, err
	default:
		c.event(ctx, cj, client.EventNormal, "SuccessfulCreate", "Created job "+name)
		active = append(active, created)
	}
	st.LastScheduleTime = last.UTC().Format(time.RFC3339)
	return active, nil
}

func (c *Controller) createJob(ctx context.Context, cj *apiv1.CronJob, name string, at time.Time) (*apiv1.Job, error) {
	t := cj.GetSpec().GetJobTemplate()
	md := &apiv1.ObjectMeta{Name: name, Namespace: cj.GetMetadata().GetNamespace(), Labels: map[string]string{},
		Annotations:     map[string]string{ScheduledAnnotation: at.UTC().Format(time.RFC3339)},
		OwnerReferences: []*apiv1.OwnerReference{ctrlkit.ControllerRef(cj, "batch/v1")}}
	for k, v := range t.GetMetadata().GetLabels() {
		md.Labels[k] = v
	}
	for k, v := range t.GetMetadata().GetAnnotations() {
		md.Annotations[k] = v
	}
	spec := codec.Clone(t.GetSpec())
	j := &apiv1.Job{ApiVersion: "batch/v1", Kind: "Job", Metadata: md, Spec: spec}
	return ctrlkit.Create(ctx, c.Client(), c.jobs, j)
}

// trimHistory deletes the oldest finished Jobs beyond the history limits
// (3 successful and 1 failed by default).
func (c *Controller) trimHistory(ctx context.Context, cj *apiv1.CronJob, succeeded, failed []*apiv1.Job) error {
	limit := func(p *int32, def int) int {
		if p == nil {
			return def
		}
		return int(*p)
	}
	var errs []error
	for _, group := range []struct {
		jobs  []*apiv1.Job
		limit int
	}{{succeeded, limit(cj.GetSpec().SuccessfulJobsHistoryLimit, 3)}, {failed, limit(cj.GetSpec().FailedJobsHistoryLimit, 1)}} {
		if len(group.jobs) <= group.limit {
			continue
		}
		sort.Slice(group.jobs, func(i, k int) bool {
			return group.jobs[i].GetMetadata().GetAnnotations()[ScheduledAnnotation] < group.jobs[k].GetMetadata().GetAnnotations()[ScheduledAnnotation]
		})
		for _, j := range group.jobs[:len(group.jobs)-group.limit] {
			if j.GetMetadata().GetDeletionTimestamp() != "" {
				continue
			}
			if err := ctrlkit.Delete(ctx, c.Client(), c.jobs, j, "Background"); err != nil {
				errs = append(errs, fmt.Errorf("delete old job %s: %w", j.GetMetadata().GetName(), err))
			}
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) event(ctx context.Context, obj client.Object, typ, reason, msg string) {
	if err := c.rec.Event(ctx, obj, typ, reason, msg); err != nil {
		c.Log.Debug("record event", "err", err)
	}
}
