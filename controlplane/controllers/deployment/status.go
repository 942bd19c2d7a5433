package deployment

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Condition types and reasons (Kubernetes').
const (
	CondProgressing        = "Progressing"
	CondAvailable          = "Available"
	ReasonNewRSAvailable   = "NewReplicaSetAvailable"
	ReasonNewRSCreated     = "NewReplicaSetCreated"
	ReasonRSUpdated        = "ReplicaSetUpdated"
	ReasonDeadlineExceeded = "ProgressDeadlineExceeded"
	ReasonPaused           = "DeploymentPaused"
	ReasonResumed          = "DeploymentResumed"
)

// defaultProgressDeadline is Kubernetes' default progressDeadlineSeconds.
const defaultProgressDeadline = 600

// Complete: the new ReplicaSet has every replica available and the old
// ones have no pods.
func Complete(d *apiv1.Deployment, newRS *apiv1.ReplicaSet, all []*apiv1.ReplicaSet) bool {
	want := Replicas(d)
	if newRS == nil || RSReplicas(newRS) != want || newRS.GetStatus().GetAvailableReplicas() < want ||
		newRS.GetStatus().GetReplicas() != want {
		return want == 0 && newRS != nil && len(activeOf(all)) == 0
	}
	for _, rs := range all {
		if rs.GetMetadata().GetUid() != newRS.GetMetadata().GetUid() && (RSReplicas(rs) > 0 || rs.GetStatus().GetReplicas() > 0) {
			return false
		}
	}
	return true
}

func activeOf(all []*apiv1.ReplicaSet) []*apiv1.ReplicaSet {
	var out []*apiv1.ReplicaSet
	for _, rs := range all {
		if RSReplicas(rs) > 0 || rs.GetStatus().GetReplicas() > 0 {
			out = append(out, rs)
		}
	}
	return out
}

func condition(st *apiv1.DeploymentStatus, typ string) *apiv1.DeploymentCondition {
	for _, c := range st.GetConditions() {
		if c.GetType() == typ {
			return c
		}
	}
	return nil
}

// setCondition replaces a condition; lastTransitionTime moves only when
// the status changes, lastUpdateTime when anything does.
func setCondition(st *apiv1.DeploymentStatus, c *apiv1.DeploymentCondition) {
	for i, old := range st.Conditions {
		if old.GetType() != c.GetType() {
			continue
		}
		if old.GetStatus() == c.GetStatus() {
			c.LastTransitionTime = old.GetLastTransitionTime()
		}
		if old.GetStatus() == c.GetStatus() && old.GetReason() == c.GetReason() && old.GetMessage() == c.GetMessage() && c.LastUpdateTime == "" {
			c.LastUpdateTime = old.GetLastUpdateTime()
		}
		st.Conditions[i] = c
		return
	}
	st.Conditions = append(st.Conditions, c)
}

func (c *Controller) writeStatus(ctx context.Context, d *apiv1.Deployment, all []*apiv1.ReplicaSet, newRS *apiv1.ReplicaSet, progressed, created bool) error {
	prev := d.GetStatus()
	st := &apiv1.DeploymentStatus{ObservedGeneration: d.GetMetadata().GetGeneration()}
	if prev != nil {
		st.CollisionCount = prev.CollisionCount
	}
	for _, cond := range prev.GetConditions() {
		st.Conditions = append(st.Conditions, codec.Clone(cond))
	}
	for _, rs := range all {
		st.Replicas += rs.GetStatus().GetReplicas()
		st.ReadyReplicas += rs.GetStatus().GetReadyReplicas()
		st.AvailableReplicas += rs.GetStatus().GetAvailableReplicas()
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.GetStatus().GetReplicas()
	}
	want := Replicas(d)
	st.UnavailableReplicas = max(want-st.AvailableReplicas, 0)
	now := c.Now().UTC()
	ts := now.Format(time.RFC3339)

	_, maxUnavailable := Limits(d)
	if d.GetSpec().GetStrategy().GetType() == "Recreate" {
		maxUnavailable = want
	}
	if st.AvailableReplicas >= want-maxUnavailable {
		setCondition(st, &apiv1.DeploymentCondition{Type: CondAvailable, Status: "True", LastTransitionTime: ts, Reason: "MinimumReplicasAvailable", Message: "Deployment has minimum availability."})
	} else {
		setCondition(st, &apiv1.DeploymentCondition{Type: CondAvailable, Status: "False", LastTransitionTime: ts, Reason: "MinimumReplicasUnavailable", Message: "Deployment does not have minimum availability."})
	}

	// Progress: the rollout moved (a set created or scaled), or pods of the
	// new set became ready/available since the last status.
	moved := progressed || st.UpdatedReplicas != prev.GetUpdatedReplicas() || st.AvailableReplicas > prev.GetAvailableReplicas() ||
		st.ReadyReplicas > prev.GetReadyReplicas()
	prog := condition(prev, CondProgressing)
	rsName := ""
	if newRS != nil {
		rsName = newRS.GetMetadata().GetName()
	}
	deadline := time.Duration(defaultProgressDeadline) * time.Second
	if p := d.GetSpec().ProgressDeadlineSeconds; p != nil {
		deadline = time.Duration(*p) * time.Second
	}
	key := client.Key(d)
	switch {
	case d.GetSpec().GetPaused():
		if prog.GetReason() != ReasonPaused {
			setCondition(st, &apiv1.DeploymentCondition{Type: CondProgressing, Status: "Unknown", LastUpdateTime: ts, LastTransitionTime: ts, Reason: ReasonPaused, Message: "Deployment is paused"})
		}
	case d.GetMetadata().GetDeletionTimestamp() != "":
	case Complete(d, newRS, all):
		setCondition(st, &apiv1.DeploymentCondition{Type: CondProgressing, Status: "True", LastTransitionTime: ts,
			Reason: ReasonNewRSAvailable, Message: fmt.Sprintf("ReplicaSet %q has successfully progressed.", rsName)})
		if c := condition(st, CondProgressing); c.LastUpdateTime == "" {
			c.LastUpdateTime = ts
		}
	case prog.GetReason() == ReasonPaused:
		setCondition(st, &apiv1.DeploymentCondition{Type: CondProgressing, Status: "Unknown", LastUpdateTime: ts, LastTransitionTime: ts, Reason: ReasonResumed, Message: "Deployment is resumed"})
		c.EnqueueAfter(key, deadline)
	case moved || prog == nil || prog.GetReason() == ReasonNewRSAvailable:
		reason, msg := ReasonRSUpdated, fmt.Sprintf("ReplicaSet %q is progressing.", rsName)
		if created {
			reason, msg = ReasonNewRSCreated, fmt.Sprintf("Created new replica set %q", rsName)
		}
		setCondition(st, &apiv1.DeploymentCondition{Type: CondProgressing, Status: "True", LastUpdateTime: ts, LastTransitionTime: ts, Reason: reason, Message: msg})
		c.EnqueueAfter(key, deadline+time.Second)
	case prog.GetReason() != ReasonDeadlineExceeded:
		last, err := time.Parse(time.RFC3339, prog.GetLastUpdateTime())
		if err != nil {
			last = now
		}
		if left := last.Add(deadline).Sub(now); left <= 0 {
			setCondition(st, &apiv1.DeploymentCondition{Type: CondProgressing, Status: "False", LastUpdateTime: ts, LastTransitionTime: ts,
				Reason: ReasonDeadlineExceeded, Message: fmt.Sprintf("ReplicaSet %q has timed out progressing.", rsName)})
			c.event(ctx, d, client.EventWarning, ReasonDeadlineExceeded, fmt.Sprintf("Deployment %q has timed out progressing", d.GetMetadata().GetName()))
		} else {
			c.EnqueueAfter(key, left+time.Second)
		}
	}
	if proto.Equal(prev, st) {
		return nil
	}
	next := codec.Clone(d)
	next.Status = st
	_, err := ctrlkit.UpdateStatus(ctx, c.Client(), c.deploys, next)
	if client.IsNotFound(err) {
		return nil
	}
	return err
}

// cleanup deletes the oldest empty ReplicaSets beyond revisionHistoryLimit.
func (c *Controller) cleanup(ctx context.Context, r *rollout) error {
	limit := int32(10)
	if l := r.d.GetSpec().RevisionHistoryLimit; l != nil {
		limit = *l
	}
	var empty []*apiv1.ReplicaSet
	for _, rs := range r.olds {
		if RSReplicas(rs) == 0 && rs.GetStatus().GetReplicas() == 0 && rs.GetMetadata().GetDeletionTimestamp() == "" &&
			rs.GetStatus().GetObservedGeneration() >= rs.GetMetadata().GetGeneration() {
			empty = append(empty, rs)
		}
	}
	if int32(len(empty)) <= limit {
		return nil
	}
	sort.SliceStable(empty, func(i, j int) bool { return Revision(empty[i].GetMetadata()) < Revision(empty[j].GetMetadata()) })
	for _, rs := range empty[:int32(len(empty))-limit] {
		if err := ctrlkit.Delete(ctx, c.Client(), c.sets, rs, ""); err != nil {
			return fmt.Errorf("delete old replicaset %s: %w", rs.GetMetadata().GetName(), err)
		}
	}
	return nil
}

// syncRevisionAnnotation copies the new ReplicaSet's revision onto the
// Deployment (what `ctl rollout history` shows as current).
func (c *Controller) syncRevisionAnnotation(ctx context.Context, r *rollout) error {
	if r.newRS == nil {
		return nil
	}
	rev := strconv.FormatInt(Revision(r.newRS.GetMetadata()), 10)
	if r.d.GetMetadata().GetAnnotations()[RevisionAnnotation] == rev {
		return nil
	}
	next := codec.Clone(r.d)
	if next.Metadata.Annotations == nil {
		next.Metadata.Annotations = map[string]string{}
	}
	next.Metadata.Annotations[RevisionAnnotation] = rev
	out, err := ctrlkit.Update(ctx, c.Client(), c.deploys, next)
	if err != nil {
		return fmt.Errorf("set revision annotation: %w", err)
	}
	r.d = out
	return nil
}
