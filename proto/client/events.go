package client

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sync"
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

	// counts are this recorder's own repeats, for a writer that may not
	// read events (a node, as Kubernetes' kubelet may only create and
	// patch them): it counts what it recorded instead.
	mu     sync.Mutex
	counts map[string]int32
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
	h := fnv.New64a()
	kind := KindOf(obj)
	for _, s := range []string{kind, md.GetUid(), eventType, reason, message, r.component} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	name := fmt.Sprintf("%s.%016x", md.GetName(), h.Sum64())
	now := r.now().UTC().Format(time.RFC3339)
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := Get[*apiv1.Event](ctx, r.c, ns, name)
		if IsForbidden(err) {
			return r.blind(ctx, ns, name, obj, eventType, reason, message, now)
		}
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
			_, err = Create(ctx, r.c, r.newEvent(ns, name, obj, eventType, reason, message, now))
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

func (r *Recorder) newEvent(ns, name string, obj Object, eventType, reason, message, now string) *apiv1.Event {
	md := obj.GetMetadata()
	return &apiv1.Event{
		Metadata: &apiv1.ObjectMeta{Name: name, Namespace: ns},
		InvolvedObject: &apiv1.ObjectReference{Kind: KindOf(obj), Namespace: md.GetNamespace(), Name: md.GetName(),
			Uid: md.GetUid(), ApiVersion: obj.ProtoReflect().Get(obj.ProtoReflect().Descriptor().Fields().ByName("apiVersion")).String(),
			ResourceVersion: md.GetResourceVersion()},
		Reason: reason, Message: message, Type: eventType, Count: 1,
		FirstTimestamp: now, LastTimestamp: now,
		Source: &apiv1.EventSource{Component: r.component, Host: r.host}, ReportingComponent: r.component,
	}
}

// blind records an event without reading it first: create, or, when it
// exists (this recorder, or an earlier run of its component, made it),
// patch its count from this recorder's own tally and its lastTimestamp.
func (r *Recorder) blind(ctx context.Context, ns, name string, obj Object, eventType, reason, message, now string) error {
	r.mu.Lock()
	if r.counts == nil {
		r.counts = map[string]int32{}
	}
	r.counts[ns+"/"+name]++
	n := r.counts[ns+"/"+name]
	r.mu.Unlock()
	_, err := Create(ctx, r.c, r.newEvent(ns, name, obj, eventType, reason, message, now))
	if !IsAlreadyExists(err) {
		return err
	}
	patch, _ := json.Marshal(map[string]any{"count": max(n, 2), "lastTimestamp": now})
	_, err = Patch[*apiv1.Event](ctx, r.c, ns, name, patch)
	return err
}
