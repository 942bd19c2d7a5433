package ctrlkit

import (
	"maps"
	"sync"

	"github.com/skiffhq/skiff/proto/client"
)

// releases remembers objects whose controller reference was just removed
// (an Orphan deletion of their owner, or a release): the owner they were
// released from must not adopt them straight back. The API server removes
// the references before it removes the owner, so without this an owner on
// its way out (still in the cache, even in a fresh read) could re-adopt
// its orphans, and the garbage collector would then delete them with it.
type releases struct {
	mu sync.Mutex
	by map[string]released // object key
}

type released struct {
	uid    string
	labels map[string]string
}

func (r *releases) observe(old, cur client.Object) {
	k := client.Key(cur)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = map[string]released{}
	}
	if before := ControllerOf(old.GetMetadata()); before != nil && ControllerOf(cur.GetMetadata()) == nil {
		r.by[k] = released{uid: before.GetUid(), labels: maps.Clone(cur.GetMetadata().GetLabels())}
		return
	}
	if rel, ok := r.by[k]; ok && (ControllerOf(cur.GetMetadata()) != nil || !maps.Equal(rel.labels, cur.GetMetadata().GetLabels())) {
		delete(r.by, k) // adopted by someone, or its labels changed: a fresh start
	}
}

func (r *releases) forget(obj client.Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.by, client.Key(obj))
}

func (r *releases) wrap(h client.EventHandler) client.EventHandler {
	out := h
	out.OnUpdate = func(old, cur client.Object) {
		r.observe(old, cur)
		if h.OnUpdate != nil {
			h.OnUpdate(old, cur)
		}
	}
	out.OnDelete = func(o client.Object) {
		r.forget(o)
		if h.OnDelete != nil {
			h.OnDelete(o)
		}
	}
	return out
}

// TrackReleases makes the cache remember released objects (ReleasedFrom),
// for a controller that adopts orphans. Call it before Run. Only adopting
// controllers pay for it: it costs a key and a lock per update, on
// informers that see every pod.
func (c *Cache) TrackReleases() *Cache {
	c.trackReleases = true
	return c
}

// ReleasedFrom reports whether obj was released by the controller with
// uid (and has not changed labels or owner since): that owner must not
// adopt it again. The cache must TrackReleases.
func (c *Cache) ReleasedFrom(obj client.Object, uid string) bool {
	if c.rel == nil {
		panic("ctrlkit: ReleasedFrom on a cache of " + c.kind + " that does not TrackReleases")
	}
	c.rel.mu.Lock()
	defer c.rel.mu.Unlock()
	rel, ok := c.rel.by[client.Key(obj)]
	return ok && rel.uid == uid && maps.Equal(rel.labels, obj.GetMetadata().GetLabels())
}
