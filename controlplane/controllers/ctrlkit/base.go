package ctrlkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/logkey"
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
	// Registerer, when set, takes the loop's queue and reconcile metrics
	// (metrics.go).
	Registerer prometheus.Registerer
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
	cfg.Registerer = d.Registerer
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

// Base runs a leader loop: informers, then workers calling a SyncFunc per
// key, plus whatever tasks and extra queues the loop adds. Every
// controller, the scheduler and the node lifecycle loop are built on it,
// so each has the same shape: state reset per term (OnStart), caches
// (Watch), keyed work (the sync, AddQueue), background tasks (Go, Every).
// Every goroutine it starts, and every informer handler, turns a panic
// into an error that ends Run (ErrPanic), which the leader's failure
// policy sees.
type Base struct {
	name   string
	cfg    Config
	Queue  *controllers.Queue
	Log    *slog.Logger
	caches []*Cache
	sync   SyncFunc
	// primary lists the keys a resync re-queues.
	primary *Cache
	starts  []func()
	tasks   []task
	queues  []*WorkQueue
	metrics *loopMetrics
}

type task struct {
	name string
	run  func(ctx context.Context) error
}

// NewBase prepares a loop named name; add caches with Watch before Run.
// sync may be nil for a loop without a main queue (only tasks).
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
	return &Base{name: name, cfg: cfg, Log: cfg.Logger.With("controller", name), sync: sync, metrics: newLoopMetrics(cfg.Registerer)}
}

// Name implements controlplane.Loop.
func (b *Base) Name() string { return b.name }

// Client is the API client.
func (b *Base) Client() *client.Client { return b.cfg.Client }

// Now reads the controller's clock.
func (b *Base) Now() time.Time { return b.cfg.Now() }

// OnStart registers fn to run at the start of every Run, before the caches
// list: it resets the loop's own per-term state, so a new leadership term
// starts from the store's current state only.
func (b *Base) OnStart(fn func()) { b.starts = append(b.starts, fn) }

// Go adds a task run once the caches are synced, beside the workers. It
// must return when ctx ends; returning nil earlier is fine (a one-off
// task), an error or a panic ends Run with it.
func (b *Base) Go(name string, run func(ctx context.Context) error) {
	b.tasks = append(b.tasks, task{name: name, run: run})
}

// Every adds a task calling fn every period (first after one period).
func (b *Base) Every(name string, period time.Duration, fn func(ctx context.Context)) {
	b.Go(name, func(ctx context.Context) error {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				fn(ctx)
			}
		}
	})
}

// WorkQueue is a keyed queue of its own beside the main one (a collection
// pass, status reports), with its own workers and retry backoff. Like the
// main queue it is new per Run.
type WorkQueue struct {
	name      string
	workers   int
	sync      SyncFunc
	base, max time.Duration
	q         *controllers.Queue
}

// AddQueue adds a WorkQueue whose keys workers (at least one) pass to
// sync; failed keys back off from retryBase to retryMax.
func (b *Base) AddQueue(name string, workers int, retryBase, retryMax time.Duration, sync SyncFunc) *WorkQueue {
	w := &WorkQueue{name: name, workers: max(workers, 1), sync: sync, base: retryBase, max: retryMax}
	b.queues = append(b.queues, w)
	return w
}

// Add queues key (dropped outside Run).
func (w *WorkQueue) Add(key string) {
	if q := w.q; q != nil {
		q.Add(key)
	}
}

// Cache is an informer plus the highest resourceVersion this controller
// wrote to its kind.
type Cache struct {
	*client.Informer // new per Run: every leadership term lists afresh
	kind             string
	opts             client.ListOptions
	handler          client.EventHandler
	wrote            atomic.Int64
	indexFn          IndexFunc
	idx              *index    // new per Run, like the informer
	rel              *releases // nil unless trackReleases
	trackReleases    bool
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
	w := c.wrote.Load()
	return w == 0 || client.Revision(c.ResourceVersion()) >= w
}

// Watch adds a cache of kind whose changes go to h. The first Watch is the
// primary kind: its objects are what keys name, and what resync re-queues.
func (b *Base) Watch(kind string, h client.EventHandler) *Cache {
	return b.WatchWith(kind, client.ListOptions{}, h)
}

// WatchWith is Watch of the objects opts selects (a namespace, labels).
func (b *Base) WatchWith(kind string, opts client.ListOptions, h client.EventHandler) *Cache {
	c := &Cache{kind: kind, opts: opts, handler: h}
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
// first lists, and runs workers and tasks until ctx ends. Caches and
// queues are new per Run, so a new leadership term starts from a fresh,
// current list (a shared informer stops with its last subscriber, the
// term's end). It returns nil when ctx ends, and the first error or panic
// of any of its goroutines otherwise.
func (b *Base) Run(ctx context.Context) error {
	if b.primary == nil && b.sync != nil {
		return errors.New("controller has a sync but no caches")
	}
	ctx, cancel := context.WithCancel(ctx)
	g := &group{cancel: cancel}
	b.Queue = controllers.NewQueue(b.cfg.RetryBase, b.cfg.RetryMax)
	queues := []*controllers.Queue{b.Queue}
	named := map[string]*controllers.Queue{mainQueue: b.Queue}
	for _, w := range b.queues {
		w.q = controllers.NewQueue(w.base, w.max)
		queues = append(queues, w.q)
		named[w.name] = w.q
	}
	b.metrics.running(named)
	defer b.metrics.running(nil)
	var informers sync.WaitGroup
	defer informers.Wait() // after cancel below: defers run last-in first-out
	defer cancel()
	for _, start := range b.starts {
		start()
	}
	for _, c := range b.caches {
		c.wrote.Store(0)
		h := c.handler
		c.rel = nil
		if c.trackReleases {
			c.rel = &releases{}
			h = c.rel.wrap(h)
		}
		c.idx = nil
		if c.indexFn != nil {
			c.idx = newIndex(c.indexFn)
			h = c.idx.wrap(h)
		}
		c.Informer = controllers.Watch(ctx, &informers, b.cfg.Informers, b.cfg.Client, c.kind, c.opts, g.guard(c.kind, h))
	}
	for _, c := range b.caches {
		if err := c.WaitForSync(ctx); err != nil {
			for _, q := range queues {
				q.ShutDown()
			}
			if gerr := g.failure(); gerr != nil {
				return fmt.Errorf("%s: %w", b.name, gerr) // a handler panicked during the first list
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: %w", b.name, err)
		}
	}
	b.Log.Debug("caches synced, starting workers", "workers", b.cfg.Workers)
	if b.sync != nil {
		for _, o := range b.primary.List() {
			b.Enqueue(o)
		}
		for i := 0; i < b.cfg.Workers; i++ {
			g.run("worker", func() error { return b.work(ctx, mainQueue, b.Queue, b.sync) })
		}
		if b.cfg.Resync > 0 {
			g.run("resync", func() error {
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
			})
		}
	}
	for _, w := range b.queues {
		for i := 0; i < w.workers; i++ {
			g.run(w.name+" worker", func() error { return b.work(ctx, w.name, w.q, w.sync) })
		}
	}
	for _, t := range b.tasks {
		g.run(t.name, func() error { return t.run(ctx) })
	}
	<-ctx.Done()
	for _, q := range queues {
		q.ShutDown()
	}
	g.wg.Wait()
	if gerr := g.failure(); gerr != nil {
		return fmt.Errorf("%s: %w", b.name, gerr)
	}
	return nil
}

// work hands keys of q to sync until q shuts down. A failed key is
// retried with backoff; a panic ends the worker (and Run) with ErrPanic.
func (b *Base) work(ctx context.Context, name string, q *controllers.Queue, sync SyncFunc) error {
	for {
		key, ok := q.Get()
		if !ok {
			return nil
		}
		err := b.waitCaughtUp(ctx)
		if err == nil {
			start := time.Now()
			err = safeSync(ctx, sync, key)
			b.metrics.observe(name, time.Since(start), err)
		}
		switch {
		case errors.Is(err, ErrPanic):
			q.Done(key)
			return err
		case ctx.Err() != nil:
		case err == nil:
			q.Forget(key)
		default:
			if client.IsConflict(err) || client.IsAlreadyExists(err) || client.IsNotFound(err) || errors.Is(err, ErrCacheBehind) || errors.Is(err, ErrOwnerGone) {
				b.Log.Debug("sync raced, retrying", b.keyAttrs(name, key, err)...)
			} else {
				b.Log.Warn("sync failed, retrying", b.keyAttrs(name, key, err)...)
			}
			q.AddRateLimited(key)
		}
		q.Done(key)
	}
}

// keyAttrs are the log keys (proto/logkey) of a failed key of queue: the
// main queue's keys name objects of the primary kind.
func (b *Base) keyAttrs(queue, key string, err error) []any {
	if queue != mainQueue || b.primary == nil {
		return []any{"queue", queue, "key", key, logkey.Err, err}
	}
	ns, name := SplitKey(key)
	return append(logkey.ObjectAttrs(b.primary.kind, ns, name), logkey.Err, err)
}

// safeSync turns a panic into an ErrPanic error naming the key.
func safeSync(ctx context.Context, sync SyncFunc, key string) (err error) {
	defer Recovered("syncing "+key, &err)
	return sync(ctx, key)
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
