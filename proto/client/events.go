package client

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Event types.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// Recorder records Events about objects, as Kubernetes components do: a
// repeat of the same (object, type, reason, message) increments the
// existing Event's count instead of adding another.
type Recorder struct {
	c         *Client
	component string
	host      string
	now       func() time.Time
}

// NewRecorder returns a recorder that signs events as component on host.
func NewRecorder(c *Client, component, host string) *Recorder {
	return &Recorder{c: c, component: component, host: host, now: time.Now}
}

// Event records one event about obj (whose kind is its message name).
func (r *Recorder) Event(ctx context.Context, obj Object, eventType, reason, message string) error {
	md := obj.GetMetadata()
	ns := md.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	kind := KindOf(obj)
	h := fnv.New64a()
	for _, s := range []string{kind, md.GetUid(), eventType, reason, message, r.component} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	name := fmt.Sprintf("%s.%016x", md.GetName(), h.Sum64())
	now := r.now().UTC().Format(time.RFC3339)
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := Get[*apiv1.Event](ctx, r.c, ns, name)
		switch {
		case err == nil:
			patch, _ := json.Marshal(map[string]any{
				"metadata": map[string]any{"resourceVersion": cur.GetMetadata().GetResourceVersion()},
				"count":    cur.GetCount() + 1, "lastTimestamp": now})
			_, err = Patch[*apiv1.Event](ctx, r.c, ns, name, patch)
			if IsConflict(err) {
				continue
			}
			return err
		case IsNotFound(err):
			ev := &apiv1.Event{
				Metadata: &apiv1.ObjectMeta{Name: name, Namespace: ns},
				InvolvedObject: &apiv1.ObjectReference{Kind: kind, Namespace: md.GetNamespace(), Name: md.GetName(),
					Uid: md.GetUid(), ApiVersion: obj.ProtoReflect().Get(obj.ProtoReflect().Descriptor().Fields().ByName("apiVersion")).String(),
					ResourceVersion: md.GetResourceVersion()},
				Reason: reason, Message: message, Type: eventType, Count: 1,
				FirstTimestamp: now, LastTimestamp: now,
				Source: &apiv1.EventSource{Component: r.component, Host: r.host}, ReportingComponent: r.component,
			}
			_, err = Create(ctx, r.c, ev)
			if IsAlreadyExists(err) {
				continue
			}
			return err
		default:
			return err
		}
	}
	return fmt.Errorf("record event %s/%s: too many concurrent updates", ns, name)
}
