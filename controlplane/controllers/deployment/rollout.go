package deployment

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Client-side rollout operations (what `ctl rollout …` does), kept here
// next to the controller whose annotations and conditions they read.

// ErrDeadlineExceeded: the rollout stopped progressing (Progressing=False).
var ErrDeadlineExceeded = errors.New("exceeded its progress deadline")

// ErrNoRevision: undo to a revision that is not in the history.
var ErrNoRevision = errors.New("revision not found")

// RolloutStatus says where a Deployment's rollout is, in kubectl's words;
// done when it finished. An error means it cannot finish by waiting.
func RolloutStatus(d *apiv1.Deployment) (msg string, done bool, err error) {
	name := d.GetMetadata().GetName()
	st := d.GetStatus()
	if d.GetMetadata().GetGeneration() > st.GetObservedGeneration() {
		return "Waiting for deployment spec update to be observed...", false, nil
	}
	if c := condition(st, CondProgressing); c != nil && c.GetReason() == ReasonDeadlineExceeded {
		return "", false, fmt.Errorf("deployment %q %w", name, ErrDeadlineExceeded)
	}
	want := Replicas(d)
	switch {
	case st.GetUpdatedReplicas() < want:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", name, st.GetUpdatedReplicas(), want), false, nil
	case st.GetReplicas() > st.GetUpdatedReplicas():
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", name, st.GetReplicas()-st.GetUpdatedReplicas()), false, nil
	case st.GetAvailableReplicas() < st.GetUpdatedReplicas():
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", name, st.GetAvailableReplicas(), st.GetUpdatedReplicas()), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out", name), true, nil
}

// HistoryEntry is one revision of a Deployment.
type HistoryEntry struct {
	Revision    int64
	ChangeCause string
	ReplicaSet  *apiv1.ReplicaSet
}

// History lists a Deployment's revisions, oldest first.
func History(ctx context.Context, c *client.Client, ns, name string) (*apiv1.Deployment, []HistoryEntry, error) {
	d, err := client.Get[*apiv1.Deployment](ctx, c, ns, name)
	if err != nil {
		return nil, nil, err
	}
	sets, _, err := client.List[*apiv1.ReplicaSet](ctx, c, client.ListOptions{Namespace: d.GetMetadata().GetNamespace()})
	if err != nil {
		return nil, nil, err
	}
	var out []HistoryEntry
	for _, rs := range OwnedReplicaSets(d, sets) {
		out = append(out, HistoryEntry{Revision: Revision(rs.GetMetadata()),
			ChangeCause: rs.GetMetadata().GetAnnotations()[ChangeCauseAnnotation], ReplicaSet: rs})
	}
	return d, out, nil
}

// Undo rolls a Deployment's template back to revision to (0: the one
// before the current) and returns the revision rolled back to. The write
// carries the resourceVersion read, so a concurrent change fails it.
func Undo(ctx context.Context, c *client.Client, ns, name string, to int64) (int64, error) {
	d, hist, err := History(ctx, c, ns, name)
	if err != nil {
		return 0, err
	}
	cur := Revision(d.GetMetadata())
	var target *HistoryEntry
	for i := len(hist) - 1; i >= 0; i-- {
		h := &hist[i]
		if (to == 0 && h.Revision != cur && h.Revision < cur) || (to != 0 && h.Revision == to) {
			target = h
			break
		}
	}
	if target == nil {
		if to == 0 {
			return 0, fmt.Errorf("deployment %q: no rollout history to undo: %w", name, ErrNoRevision)
		}
		return 0, fmt.Errorf("deployment %q: unable to find specified revision %d in history: %w", name, to, ErrNoRevision)
	}
	tmpl := StripHash(target.ReplicaSet.GetSpec().GetTemplate())
	if proto.Equal(tmpl, StripHash(d.GetSpec().GetTemplate())) {
		return target.Revision, fmt.Errorf("skipped rollback (current template already matches revision %d)", target.Revision)
	}
	next := codec.Clone(d)
	next.Spec.Template = tmpl
	if cause := target.ChangeCause; cause != "" {
		if next.Metadata.Annotations == nil {
			next.Metadata.Annotations = map[string]string{}
		}
		next.Metadata.Annotations[ChangeCauseAnnotation] = cause
	}
	if _, err := client.Update(ctx, c, next); err != nil {
		return 0, err
	}
	return target.Revision, nil
}

// SetPaused pauses or resumes a Deployment; changed is false when it
// already was so.
func SetPaused(ctx context.Context, c *client.Client, ns, name string, paused bool) (changed bool, err error) {
	d, err := client.Get[*apiv1.Deployment](ctx, c, ns, name)
	if err != nil {
		return false, err
	}
	if d.GetSpec().GetPaused() == paused {
		return false, nil
	}
	patch := fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"spec":{"paused":%s}}`, d.GetMetadata().GetResourceVersion(), strconv.FormatBool(paused))
	_, err = client.Patch[*apiv1.Deployment](ctx, c, ns, name, []byte(patch))
	return err == nil, err
}
