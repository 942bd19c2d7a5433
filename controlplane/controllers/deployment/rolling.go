package deployment

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Limits resolves maxSurge (rounded up) and maxUnavailable (rounded down)
// against replicas, as Kubernetes does; both zero becomes unavailable 1.
func Limits(d *apiv1.Deployment) (surge, unavailable int32) {
	ru := d.GetSpec().GetStrategy().GetRollingUpdate()
	n := int(Replicas(d))
	s, err := kinds.IntOrPercent(orDefault(ru.GetMaxSurge()), n, true)
	if err != nil {
		s = 0
	}
	u, err := kinds.IntOrPercent(orDefault(ru.GetMaxUnavailable()), n, false)
	if err != nil {
		u = 0
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(min(u, n))
}

func orDefault(v string) string {
	if v == "" {
		return "25%"
	}
	return v
}

// podCount is an upper bound of the active pods a ReplicaSet has now: its
// spec (it creates up to that) or its last counted pods (it may not yet
// have deleted down to a lowered spec).
func podCount(rs *apiv1.ReplicaSet) int32 { return max(RSReplicas(rs), rs.GetStatus().GetReplicas()) }

// availableCount is a lower bound of the available pods a ReplicaSet will
// keep: of its available pods, it deletes down to its spec.
func availableCount(rs *apiv1.ReplicaSet) int32 {
	return min(RSReplicas(rs), rs.GetStatus().GetAvailableReplicas())
}

// newScaleUp is how far the new ReplicaSet (now at cur) may grow.
func (r *rollout) newScaleUp(cur int32) int32 {
	want := Replicas(r.d)
	if cur >= want {
		return want
	}
	surge, _ := Limits(r.d)
	total := int32(0)
	for _, rs := range r.all {
		total += podCount(rs)
	}
	room := want + surge - total
	if room <= 0 {
		return cur
	}
	return cur + min(room, want-cur)
}

// rolling does one step of a rolling update: grow the new ReplicaSet
// within maxSurge, then shrink old ones within maxUnavailable.
func (r *rollout) rolling(ctx context.Context) error {
	want := Replicas(r.d)
	if n := r.newScaleUp(RSReplicas(r.newRS)); n != RSReplicas(r.newRS) {
		out, err := r.scale(ctx, r.newRS, n)
		if err != nil {
			return err
		}
		r.newRS = out
	}
	if RSReplicas(r.newRS) > want {
		out, err := r.scale(ctx, r.newRS, want)
		if err != nil {
			return err
		}
		r.newRS = out
	}
	_, maxUnavailable := Limits(r.d)
	minAvailable := want - maxUnavailable
	var available int32
	for _, rs := range r.all {
		available += availableCount(rs)
	}
	budget := available - minAvailable
	for _, rs := range r.olds {
		n := RSReplicas(rs)
		if n == 0 {
			continue
		}
		// Pods of an old set that are not available cost nothing to remove
		// (the ReplicaSet deletes not-ready pods first).
		free := max(n-availableCount(rs), 0)
		cut := free + max(min(budget, n-free), 0)
		budget -= cut - free
		if cut == 0 {
			continue
		}
		if _, err := r.scale(ctx, rs, n-cut); err != nil {
			return err
		}
	}
	return nil
}

// recreate scales every old ReplicaSet to zero, waits until their pods are
// gone, then scales the new one up.
func (r *rollout) recreate(ctx context.Context) error {
	for _, rs := range r.olds {
		if RSReplicas(rs) > 0 {
			if _, err := r.scale(ctx, rs, 0); err != nil {
				return err
			}
		}
	}
	if r.oldPodsLeft() {
		return nil // pod deletions requeue us
	}
	out, err := r.scale(ctx, r.newRS, Replicas(r.d))
	if err != nil {
		return err
	}
	r.newRS = out
	return nil
}

// oldPodsLeft: pods of old ReplicaSets that have not finished or gone.
func (r *rollout) oldPodsLeft() bool {
	for _, rs := range r.olds {
		for _, p := range ctrlkit.OwnedPods(r.c.pods, rs.GetMetadata().GetUid(), "") {
			if ph := p.GetStatus().GetPhase(); ph != ctrlkit.PodSucceeded && ph != ctrlkit.PodFailed {
				return true
			}
		}
	}
	return false
}
