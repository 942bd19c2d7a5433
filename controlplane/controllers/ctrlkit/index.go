package ctrlkit

import (
	"slices"
	"sync"

	"github.com/skiffhq/skiff/proto/client"
)

// Index keys objects by the values an IndexFunc gives, so a sync reads
// "the pods of this owner" without copying every pod in the cache.
type IndexFunc func(obj client.Object) []string

// ByOwner indexes objects by their controller's uid ("owner/<uid>") and
// objects without a controller by namespace ("orphan/<ns>").
func ByOwner(obj client.Object) []string {
	md := obj.GetMetadata()
	if ref := ControllerOf(md); ref != nil {
		return []string{OwnerKey(ref.GetUid())}
	}
	return []string{OrphanKey(md.GetNamespace())}
}

// OwnerKey is ByOwner's key of the objects a controller uid controls.
func OwnerKey(uid string) string { return "owner/" + uid }

// OrphanKey is ByOwner's key of a namespace's objects without controller.
func OrphanKey(ns string) string { return "orphan/" + ns }

type index struct {
	fn   IndexFunc
	mu   sync.RWMutex
	sets map[string]map[string]client.Object // index key -> object key -> object
}

func newIndex(fn IndexFunc) *index {
	return &index{fn: fn, sets: map[string]map[string]client.Object{}}
}

func (ix *index) update(old, cur client.Object) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var is []string
	if cur != nil {
		is = ix.fn(cur)
	}
	// Most updates (a bind, a status) keep the index values: then the add
	// below replaces the object in place, with nothing to remove first.
	if old != nil {
		if was := ix.fn(old); !slices.Equal(was, is) {
			k := client.Key(old)
			for _, v := range was {
				delete(ix.sets[v], k)
				if len(ix.sets[v]) == 0 {
					delete(ix.sets, v)
				}
			}
		}
	}
	if cur != nil {
		k := client.Key(cur)
		for _, v := range is {
			if ix.sets[v] == nil {
				ix.sets[v] = map[string]client.Object{}
			}
			ix.sets[v][k] = cur
		}
	}
}

func (ix *index) get(key string) []client.Object {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]client.Object, 0, len(ix.sets[key]))
	for _, o := range ix.sets[key] {
		out = append(out, o)
	}
	return out
}

// wrap keeps the index current before the user's handler runs.
func (ix *index) wrap(h client.EventHandler) client.EventHandler {
	return client.EventHandler{
		OnAdd: func(o client.Object) {
			ix.update(nil, o)
			if h.OnAdd != nil {
				h.OnAdd(o)
			}
		},
		OnUpdate: func(old, o client.Object) {
			ix.update(old, o)
			if h.OnUpdate != nil {
				h.OnUpdate(old, o)
			}
		},
		OnDelete: func(o client.Object) {
			ix.update(o, nil)
			if h.OnDelete != nil {
				h.OnDelete(o)
			}
		},
	}
}

// Indexed makes the cache keep an index (set before Run).
func (c *Cache) Indexed(fn IndexFunc) *Cache {
	c.indexFn = fn
	return c
}

// ByIndex returns the cached objects under an index key: the cache's own,
// shared with every other reader, so they must not be modified (clone one
// to change it), as with client-go's listers. A sync of an owner of 1,000
// pods copied all 1,000 on every pod event before.
func (c *Cache) ByIndex(key string) []client.Object {
	if c.idx == nil {
		panic("ctrlkit: ByIndex on a cache without Indexed")
	}
	return c.idx.get(key)
}
