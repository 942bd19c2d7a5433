package ctrlkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/proto/client"
)

// Config is shared by every controller built on Base.
type Config struct {
	Client *client.Client
	Logger *slog.Logger
	// Workers reconcile keys in parallel (never the same key twice at once).
	Workers int
	// Resync re-queues every object this often (0: never), which catches
	// time-based changes (availability after minReadySeconds, deadlines)
	// that no watch event announces.
	Resync time.Duration
	// Retries of a failed key back off from RetryBase to RetryMax.
	RetryBase, RetryMax time.Duration
	// Now is the clock (tests inject one).
	Now func() time.Time
	// Informers, when set, shares informers with the other loops.
	Informers *client.InformerFactory
}

// DefaultConfig: 5 workers (kube-controller-manager's --concurrent-*-syncs default), resync every 30 s.
func DefaultConfig(c *client.Client) Config {
	return Config{Client: c, Logger: slog.Default(), Workers: 5, Resync: 30 * time.Second,
		RetryBase: 5 * time.Millisecond, RetryMax: 10 * time.Second, Now: time.Now}
}

// FromDeps is the Config of the controller registered as name: its entry
// in d.Configs (a ctrlkit.Config) or DefaultConfig, with d's client and
// logger.
func FromDeps(d controllers.Deps, name string) (Config, error) {
	cfg, err := controllers.ConfigFor(d, name, DefaultConfig(d.Client))
	if err != nil {
		return cfg, err
	}
	cfg.Client = d.Client
	cfg.Informers = d.Informers
	if d.Logger != nil {
		cfg.Logger = d.Logger
	}
	return cfg, nil
}

// Factory adapts a constructor to controllers.Factory under name.
func Factory[T controlplane.Loop](name string, build func(Config) T) controllers.Factory {
	return func(d controllers.Deps) (controlplane.Loop, error) {
		cfg, err := FromDeps(d, name)
		if err != nil {
			return nil, err
		}
		return build(cfg), nil
	}
}

// SyncFunc reconciles one key ("namespace/name").
type SyncFunc func(ctx context.Context, key string) error

// Base runs a controller: informers, then workers calling Sync per key.
type Base struct {
	name   string
	cfg    Config
	Queue  *controllers.Queue
	Log    *slog.Logger
	caches []*Cache
	sync   SyncFunc
	// primary lists the keys a resync re-queues.
	primary *Cache
}

// NewBase prepares a controller named name; add caches with Watch before Run.
func NewBase(name string, cfg Config, sync SyncFunc) *Base {
	def := DefaultConfig(cfg.Client)
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Workers <= 0 {
		cfg.Workers = def.Workers
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = def.RetryBase
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = def.RetryMax
	}
	return &Base{name: name, cfg: cfg, Log: cfg.Logger.With("controller", name), sync: sync}
}

// Name implements controlplane.Loop.
func (b *Base) Name() string { return b.name }

// Client is the API client.
func (b *Base) Client() *client.Client { return b.cfg.Client }

// Now reads the controller's clock.
func (b *Base) Now() time.Time { return b.cfg.Now() }

// Cache is an informer plus the highest resourceVersion this controller
// wrote to its kind.
type Cache struct {
	*client.Informer // new per Run: every leadership term lists afresh
	kind             string
	handler          client.EventHandler
	wrote            atomic.Int64
	indexFn          IndexFunc
	idx              *index // new per Run, like the informer
	rel              *releases
}

// Kind is the cached kind.
func (c *Cache) Kind() string { return c.kind }

// Wrote records a write's resourceVersion: syncs wait until the cache has
// seen it.
func (c *Cache) Wrote(obj client.Object) {
	if obj == nil {
		return
	}
	c.wroteRevision(client.Revision(obj.GetMetadata().GetResourceVersion()))
}

func (c *Cache) wroteRevision(rv int64) {
	for {
		cur := c.wrote.Load()
		if rv <= cur || c.wrote.CompareAndSwap(cur, rv) {
			return
		}
	}
}

func (c *Cache) caughtUp() bool {
	return client.Revision(c.ResourceVersion()) >= c.wrote.Load()
}

// Watch adds a cache of kind whose changes go to h. The first Watch is the
// primary kind: its objects are what keys name, and what resync re-queues.
func (b *Base) Watch(kind string, h client.EventHandler) *Cache {
	c := &Cache{kind: kind, handler: h}
	if b.primary == nil {
		b.primary = c
	}
	b.caches = append(b.caches, c)
	return c
}

// EnqueueHandler queues the key of every changed object (for the primary kind).
func (b *Base) EnqueueHandler() client.EventHandler {
	return client.EventHandler{
		OnAdd:    func(o client.Object) { b.Enqueue(o) },
		OnUpdate: func(_, o client.Object) { b.Enqueue(o) },
		OnDelete: func(o client.Object) { b.Enqueue(o) },
	}
}

// Enqueue queues obj's key.
func (b *Base) Enqueue(obj client.Object) {
	if q := b.Queue; q != nil {
		q.Add(client.Key(obj))
	}
}

// EnqueueKey queues a key.
func (b *Base) EnqueueKey(key string) {
	if q := b.Queue; q != nil {
		q.Add(key)
	}
}

// EnqueueAfter queues key after d.
func (b *Base) EnqueueAfter(key string, d time.Duration) {
	if q := b.Queue; q != nil {
		q.AddAfter(key, d)
	}
}

// Run implements controlplane.Loop: it starts the caches, waits for their
// first lists, and runs workers until ctx ends. Caches and queue are new
// per Run, so a new leadership term starts from a fresh, current list (a
// shared informer stops with its last subscriber, the term's end).
func (b *Base) Run(ctx context.Context) error {
	if b.primary == nil {
		return errors.New("controller has no caches")
	}
	b.Queue = controllers.NewQueue(b.cfg.RetryBase, b.cfg.RetryMax)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel below: defers run last-in first-out
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer b.Queue.ShutDown()
	for _, c := range b.caches {
		c.wrote.Store(0)
		c.rel = &releases{}
		h := c.rel.wrap(c.handler)
		c.idx = nil
		if c.indexFn != nil {
			c.idx = newIndex(c.indexFn)
			h = c.idx.wrap(h)
		}
		c.Informer = controllers.Watch(ctx, &wg, b.cfg.Informers, b.cfg.Client, c.kind, client.ListOptions{}, h)
	}
	for _, c := range b.caches {
		if err := c.WaitForSync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: %w", b.name, err)
		}
	}
	b.Log.Debug("caches synced, starting workers", "workers", b.cfg.Workers)
	for _, o := range b.primary.List() {
		b.Enqueue(o)
	}
	for i := 0; i < b.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.work(ctx)
		}()
	}
	if b.cfg.Resync > 0 {
		t := time.NewTicker(b.cfg.Resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				for _, o := range b.primary.List() {
					b.Enqueue(o)
				}
			}
		}
	}
	<-ctx.Done()
	return nil
}

func (b *Base) work(ctx context.Context) {
	for {
		key, ok := b.Queue.Get()
		if !ok {
			return
		}
		err := b.waitCaughtUp(ctx)
		if err == nil {
			err = b.safeSync(ctx, key)
		}
		switch {
		case ctx.Err() != nil:
		case err == nil:
			b.Queue.Forget(key)
		default:
			if client.IsConflict(err) || client.IsAlreadyExists(err) || client.IsNotFound(err) || errors.Is(err, ErrCacheBehind) || errors.Is(err, ErrOwnerGone) {
				b.Log.Debug("sync raced, retrying", "key", key, "err", err)
			} else {
				b.Log.Warn("sync failed, retrying", "key", key, "err", err)
			}
			b.Queue.AddRateLimited(key)
		}
		b.Queue.Done(key)
	}
}

// safeSync turns a panic into an error: one malformed object must not take
// the leader down, and it is retried with backoff like any failure.
func (b *Base) safeSync(ctx context.Context, key string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic syncing %s: %v\n%s", key, r, debug.Stack())
		}
	}()
	return b.sync(ctx, key)
}

// ErrCacheBehind: the caches have not yet seen this controller's own
// writes; the key is retried instead of being synced on stale data.
var ErrCacheBehind = errors.New("cache behind own writes")

// waitCaughtUp waits (briefly) until every cache has seen our last write.
func (b *Base) waitCaughtUp(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		ok := true
		for _, c := range b.caches {
			if !c.caughtUp() {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return ErrCacheBehind
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// SplitKey splits "namespace/name".
func SplitKey(key string) (ns, name string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}
