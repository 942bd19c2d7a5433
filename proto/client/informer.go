package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// EventHandler receives an informer's changes, in order, on the informer's
// goroutine. Objects passed in must not be modified. Nil funcs are skipped.
type EventHandler struct {
	OnAdd    func(obj Object)
	OnUpdate func(old, cur Object)
	OnDelete func(obj Object)
}

// Informer keeps a local cache of one kind's objects: it lists them, then
// watches from the list's resourceVersion; when the stream breaks it
// resumes from the last resourceVersion seen (on any server), and when that
// is too old it lists again and reports the difference as events.
type Informer struct {
	c    *Client
	kind string
	opts ListOptions
	log  func(msg string, args ...any)

	// deliver is held while the cache changes and the change is handed to
	// every handler, and while a handler is added: a new handler sees each
	// change exactly once, either in its replay or as an event.
	deliver  sync.Mutex
	handlers []*EventHandler

	mu     sync.RWMutex
	items  map[string]Object // "namespace/name"
	rv     string
	synced chan struct{}
	once   sync.Once

	// Relists counts full re-lists after the first (for tests and metrics).
	relists int
}

// NewInformer returns an informer for kind (a kind name such as "Pod").
func NewInformer(c *Client, kind string, opts ListOptions, h EventHandler) *Informer {
	i := &Informer{c: c, kind: kind, opts: opts, items: map[string]Object{},
		synced: make(chan struct{}), log: c.opts.Logger.With("informer", kind).Debug}
	if h.OnAdd != nil || h.OnUpdate != nil || h.OnDelete != nil {
		i.handlers = []*EventHandler{&h}
	}
	return i
}

// AddHandler registers another handler. If the informer has its first list
// already, the handler is first given every cached object as an add. The
// returned func removes the handler.
func (i *Informer) AddHandler(h EventHandler) (remove func()) {
	hp := &h
	i.deliver.Lock()
	defer i.deliver.Unlock()
	if i.HasSynced() && h.OnAdd != nil {
		i.mu.RLock()
		objs := make([]Object, 0, len(i.items))
		for _, obj := range i.items {
			objs = append(objs, obj)
		}
		i.mu.RUnlock()
		for _, obj := range objs {
			h.OnAdd(obj)
		}
	}
	i.handlers = append(i.handlers, hp)
	return func() {
		i.deliver.Lock()
		defer i.deliver.Unlock()
		for k, x := range i.handlers {
			if x == hp {
				i.handlers = append(i.handlers[:k:k], i.handlers[k+1:]...)
				return
			}
		}
	}
}

func (i *Informer) onAdd(obj Object) {
	for _, h := range i.handlers {
		if h.OnAdd != nil {
			h.OnAdd(obj)
		}
	}
}

func (i *Informer) onUpdate(old, cur Object) {
	for _, h := range i.handlers {
		if h.OnUpdate != nil {
			h.OnUpdate(old, cur)
		}
	}
}

func (i *Informer) onDelete(obj Object) {
	for _, h := range i.handlers {
		if h.OnDelete != nil {
			h.OnDelete(obj)
		}
	}
}

// Key is the cache key of an object: "namespace/name", or "name".
func Key(obj Object) string {
	md := obj.GetMetadata()
	if md.GetNamespace() == "" {
		return md.GetName()
	}
	return md.GetNamespace() + "/" + md.GetName()
}

// Run lists and watches until ctx ends. It returns ctx.Err() then; other
// errors are retried with backoff.
func (i *Informer) Run(ctx context.Context) error {
	pause := i.c.opts.RetryBackoff
	needList := true
	for ctx.Err() == nil {
		if needList {
			if err := i.list(ctx); err != nil {
				i.log("list failed", "err", err)
				if !sleep(ctx, pause) {
					break
				}
				pause = min(2*pause, i.c.opts.MaxBackoff)
				continue
			}
			needList = false
		}
		err := i.watch(ctx)
		switch {
		case ctx.Err() != nil:
		case IsTooOld(err):
			i.log("watch history gone, re-listing", "rv", i.ResourceVersion())
			needList = true
		case err != nil:
			i.log("watch ended, resuming", "rv", i.ResourceVersion(), "err", err)
			if !sleep(ctx, pause) {
				break
			}
			pause = min(2*pause, i.c.opts.MaxBackoff)
		default:
			pause = i.c.opts.RetryBackoff
		}
	}
	return ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (i *Informer) list(ctx context.Context) error {
	envs, rv, err := i.c.ListEnvelopes(ctx, i.kind, i.opts)
	if err != nil {
		return err
	}
	fresh := make(map[string]Object, len(envs))
	for _, env := range envs {
		obj, err := Unpack(env)
		if err != nil {
			return err
		}
		fresh[Key(obj)] = obj
	}
	i.deliver.Lock()
	defer i.deliver.Unlock()
	i.mu.Lock()
	old := i.items
	i.items = fresh
	i.rv = rv
	first := false
	i.once.Do(func() { first = true })
	if !first {
		i.relists++
	}
	i.mu.Unlock()
	for k, obj := range fresh {
		if prev, ok := old[k]; !ok {
			i.onAdd(obj)
		} else if prev.GetMetadata().GetResourceVersion() != obj.GetMetadata().GetResourceVersion() {
			i.onUpdate(prev, obj)
		}
	}
	for k, prev := range old {
		if _, ok := fresh[k]; !ok {
			i.onDelete(prev)
		}
	}
	if first {
		close(i.synced)
	}
	return nil
}

// watch streams from the cached resourceVersion until the stream ends.
func (i *Informer) watch(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := i.c.api.Watch(ctx, &apiv1.WatchRequest{Kind: i.kind, Namespace: i.opts.Namespace,
		LabelSelector: i.opts.LabelSelector, FieldSelector: i.opts.FieldSelector, ResourceVersion: i.ResourceVersion(),
		// Bookmarks keep the resume point current while nothing of this
		// kind changes, so a broken stream resumes without a re-list.
		AllowBookmarks: true})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		for _, ev := range resp.GetEvents() {
			if err := i.apply(ev); err != nil {
				return err
			}
		}
	}
}

func (i *Informer) apply(ev *apiv1.WatchEvent) error {
	if ev.GetType() == apiv1.WatchEvent_BOOKMARK {
		i.mu.Lock()
		i.rv = ev.GetResourceVersion()
		i.mu.Unlock()
		return nil
	}
	obj, err := Unpack(ev.GetObject())
	if err != nil {
		return fmt.Errorf("watch event: %w", err)
	}
	k := Key(obj)
	i.deliver.Lock()
	defer i.deliver.Unlock()
	i.mu.Lock()
	prev, had := i.items[k]
	if ev.GetType() == apiv1.WatchEvent_DELETED {
		delete(i.items, k)
	} else {
		i.items[k] = obj
	}
	i.rv = ev.GetResourceVersion()
	i.mu.Unlock()
	switch {
	case ev.GetType() == apiv1.WatchEvent_DELETED:
		if had {
			i.onDelete(obj)
		}
	case had:
		i.onUpdate(prev, obj)
	default:
		i.onAdd(obj)
	}
	return nil
}

// HasSynced reports whether the first list is in the cache.
func (i *Informer) HasSynced() bool {
	select {
	case <-i.synced:
		return true
	default:
		return false
	}
}

// WaitForSync blocks until the first list is in the cache or ctx ends.
func (i *Informer) WaitForSync(ctx context.Context) error {
	select {
	case <-i.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("informer %s: waiting for first list: %w", i.kind, ctx.Err())
	}
}

// ResourceVersion is the revision the cache reflects.
func (i *Informer) ResourceVersion() string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.rv
}

// Get returns a cached object by namespace and name (a copy).
func (i *Informer) Get(ns, name string) (Object, bool) {
	k := name
	if ns != "" {
		k = ns + "/" + name
	}
	i.mu.RLock()
	defer i.mu.RUnlock()
	obj, ok := i.items[k]
	if !ok {
		return nil, false
	}
	return codec.Clone(obj), true
}

// Has reports whether an object is cached, without copying it.
func (i *Informer) Has(ns, name string) bool {
	k := name
	if ns != "" {
		k = ns + "/" + name
	}
	i.mu.RLock()
	defer i.mu.RUnlock()
	_, ok := i.items[k]
	return ok
}

// List returns copies of every cached object.
func (i *Informer) List() []Object {
	i.mu.RLock()
	defer i.mu.RUnlock()
	out := make([]Object, 0, len(i.items))
	for _, obj := range i.items {
		out = append(out, codec.Clone(obj))
	}
	return out
}

// Relists is how many times the informer re-listed after its first list.
func (i *Informer) Relists() int {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.relists
}
