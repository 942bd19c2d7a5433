// Package workqueue is the controllers' work queue: keys (an object's
// "namespace/name") waiting to be reconciled, each held at most once while
// waiting and never processed by two workers at the same time, with
// per-key exponential backoff for retries and delayed adds for work that is
// due later (a progress deadline, the next cron tick).
//
// It is client-go's workqueue shape, cut to what our controllers use.
package workqueue

import (
	"sync"
	"time"
)

// Config tunes retries.
type Config struct {
	// BaseDelay is the first retry's delay; it doubles per failure of the
	// same key up to MaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
}

// DefaultConfig retries after 5 ms, 10 ms, … up to 10 s: conflicts (the
// usual failure) clear as soon as the cache catches up, persistent
// failures must not spin.
func DefaultConfig() Config {
	return Config{BaseDelay: 5 * time.Millisecond, MaxDelay: 10 * time.Second}
}

// Queue is a set of keys to process.
type Queue struct {
	cfg Config

	mu         sync.Mutex
	cond       *sync.Cond
	order      []string
	dirty      map[string]bool // waiting (in order, or re-added while processing)
	processing map[string]bool
	failures   map[string]int
	timers     map[string]*time.Timer // delayed adds, the earliest per key
	due        map[string]time.Time
	shutdown   bool
}

// New returns an empty queue.
func New(cfg Config) *Queue {
	def := DefaultConfig()
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = def.BaseDelay
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = def.MaxDelay
	}
	q := &Queue{cfg: cfg, dirty: map[string]bool{}, processing: map[string]bool{}, failures: map[string]int{},
		timers: map[string]*time.Timer{}, due: map[string]time.Time{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key unless it is already waiting. A key being processed is
// queued again once its worker calls Done.
func (q *Queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *Queue) addLocked(key string) {
	if q.shutdown || q.dirty[key] {
		return
	}
	q.dirty[key] = true
	if q.processing[key] {
		return
	}
	q.order = append(q.order, key)
	q.cond.Signal()
}

// AddAfter queues key after d. Of several delayed adds of one key the
// earliest wins.
func (q *Queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := time.Now().Add(d)
	if t, ok := q.timers[key]; ok {
		if !q.due[key].After(at) {
			return
		}
		t.Stop()
	}
	q.due[key] = at
	q.timers[key] = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.due[key].Equal(at) {
			delete(q.timers, key)
			delete(q.due, key)
		}
		q.addLocked(key)
	})
}

// AddRateLimited queues key after its backoff, and counts a failure.
func (q *Queue) AddRateLimited(key string) {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	d := q.cfg.BaseDelay
	for i := 0; i < n && d < q.cfg.MaxDelay; i++ {
		d *= 2
	}
	q.AddAfter(key, min(d, q.cfg.MaxDelay))
}

// Forget resets key's backoff (it was processed successfully).
func (q *Queue) Forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, key)
}

// NumRequeues is how many times key failed since it was last forgotten.
func (q *Queue) NumRequeues(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failures[key]
}

// Get blocks until a key is ready or the queue shuts down (ok false). The
// caller must call Done(key) when finished.
func (q *Queue) Get() (key string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	key, q.order = q.order[0], q.order[1:]
	delete(q.dirty, key)
	q.processing[key] = true
	return key, true
}

// Done ends processing of key; if it was added meanwhile it waits again.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] && !q.shutdown {
		q.order = append(q.order, key)
		q.cond.Signal()
	}
}

// Len is the number of keys waiting (not counting delayed adds).
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// ShutDown wakes every Get with ok false and drops pending delayed adds.
func (q *Queue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for k, t := range q.timers {
		t.Stop()
		delete(q.timers, k)
	}
	q.cond.Broadcast()
}
