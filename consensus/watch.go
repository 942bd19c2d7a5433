package consensus

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// watchHub keeps a bounded history of events and lets any number of
// watchers read it. The FSM only appends and closes a channel; each watcher
// reads the history at its own pace on its own goroutine, so a slow watcher
// never blocks the FSM or another watcher. A watcher that falls behind the
// oldest event kept is cut off with ErrWatcherTooSlow.
type watchHub struct {
	mu     sync.RWMutex
	limit  int
	events []*storepb.Event // ring buffer
	start  int              // index of the oldest event in events
	n      int              // events held
	// oldest revision a watcher may still resume from: events of every
	// revision >= oldestRev are held (or none happened yet).
	oldestRev int64
	current   int64
	wake      chan struct{}
	watchers  int
}

// watchBatchMax bounds how many events a watcher copies under the read lock.
const watchBatchMax = 512

func newWatchHub(limit int) *watchHub {
	if limit <= 0 {
		limit = 1
	}
	return &watchHub{limit: limit, events: make([]*storepb.Event, limit), oldestRev: 1, wake: make(chan struct{})}
}

// append adds the events of one FSM batch ending at revision rev.
func (h *watchHub) append(evs []*storepb.Event, rev int64) {
	h.mu.Lock()
	for _, e := range evs {
		if h.n == h.limit {
			dropped := h.events[h.start]
			h.events[h.start] = nil
			h.start = (h.start + 1) % h.limit
			h.n--
			// Every event of the dropped revision must go before a resume
			// from it is refused; events of one txn share a revision.
			h.oldestRev = eventRevision(dropped) + 1
		}
		h.events[(h.start+h.n)%h.limit] = e
		h.n++
	}
	h.current = rev
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

// reset empties the history after a snapshot restore at revision rev.
func (h *watchHub) reset(rev int64) {
	h.mu.Lock()
	for i := range h.events {
		h.events[i] = nil
	}
	h.start, h.n = 0, 0
	h.current = rev
	h.oldestRev = rev + 1
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

func eventRevision(e *storepb.Event) int64 { return e.Kv.ModRevision }

func (h *watchHub) at(i int) *storepb.Event { return h.events[(h.start+i)%h.limit] }

// collect returns up to watchBatchMax events with revision >= from matching
// the filter, the revision to continue from, and the channel to wait on
// when there is nothing new. Caller must not hold h.mu.
func (h *watchHub) collect(from int64, key []byte, prefix bool) ([]*storepb.Event, int64, <-chan struct{}, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if from < h.oldestRev {
		return nil, from, nil, ErrWatcherTooSlow
	}
	if from > h.current {
		return nil, from, h.wake, nil
	}
	i := sort.Search(h.n, func(i int) bool { return eventRevision(h.at(i)) >= from })
	var out []*storepb.Event
	var lastRev int64
	scanned := 0
	for ; i < h.n; i++ {
		e := h.at(i)
		rev := eventRevision(e)
		// Stop only on a revision boundary so a txn's events arrive together.
		if rev != lastRev && (len(out) >= watchBatchMax || scanned >= 4*watchBatchMax) {
			break
		}
		scanned++
		lastRev = rev
		if matches(e.Kv.Key, key, prefix) {
			out = append(out, e)
		}
	}
	if i < h.n {
		// More history to scan: no need to wait for a wake-up.
		return out, eventRevision(h.at(i)), nil, nil
	}
	return out, h.current + 1, h.wake, nil
}

func matches(k, key []byte, prefix bool) bool {
	if prefix {
		return bytes.HasPrefix(k, key)
	}
	return bytes.Equal(k, key)
}

// WatchBatch is one delivery to a watcher: the events of one or more whole
// revisions, in order. A batch without events is a progress notification:
// nothing matching happened up to Revision.
type WatchBatch struct {
	Revision int64 // the revision of the last event
	Events   []*storepb.Event
}

// Watcher delivers events on C until the context is cancelled or an error
// ends it; then C is closed and Err says why.
type Watcher struct {
	C      <-chan WatchBatch
	err    error
	done   chan struct{}
	cancel context.CancelFunc
}

// Err is the reason the watch ended (nil while it runs; context.Canceled when
// the caller stopped it).
func (w *Watcher) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Stop ends the watch.
func (w *Watcher) Stop() { w.cancel() }

// startWatcher launches a watcher from revision from (already validated).
// With progress > 0, a watcher whose filter matched nothing for that long
// sends an empty batch carrying the revision it has seen up to, so its
// consumer can resume from there instead of from an old revision.
func (h *watchHub) startWatcher(ctx context.Context, key []byte, prefix bool, from int64, buffer int, progress time.Duration, onEnd func()) *Watcher {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan WatchBatch, buffer)
	w := &Watcher{C: ch, done: make(chan struct{}), cancel: cancel}
	h.mu.Lock()
	h.watchers++
	h.mu.Unlock()
	go func() {
		defer func() {
			h.mu.Lock()
			h.watchers--
			h.mu.Unlock()
			// done before C: a consumer that sees C closed must find Err set.
			close(w.done)
			close(ch)
			onEnd()
		}()
		w.err = h.run(ctx, key, prefix, from, progress, ch)
	}()
	return w
}

func (h *watchHub) run(ctx context.Context, key []byte, prefix bool, from int64, progress time.Duration, ch chan<- WatchBatch) error {
	next := from
	var tick <-chan time.Time
	if progress > 0 {
		t := time.NewTicker(progress)
		defer t.Stop()
		tick = t.C
	}
	sent := from - 1 // the revision the consumer knows it has seen up to
	for {
		evs, n, wake, err := h.collect(next, key, prefix)
		if err != nil {
			return fmt.Errorf("watch %q from revision %d: %w", key, next, err)
		}
		next = n
		if len(evs) > 0 {
			b := WatchBatch{Revision: eventRevision(evs[len(evs)-1]), Events: evs}
			select {
			case ch <- b:
				sent = b.Revision
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if wake == nil {
			continue
		}
		select {
		case <-wake:
		case <-tick:
			if next-1 > sent {
				select {
				case ch <- WatchBatch{Revision: next - 1}:
					sent = next - 1
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// checkStart validates a requested start revision: 0 means "from the next
// write"; a revision older than the history is ErrCompacted.
func (h *watchHub) checkStart(rev int64) (int64, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if rev == 0 {
		return h.current + 1, nil
	}
	if rev < h.oldestRev {
		return 0, fmt.Errorf("watch from revision %d: oldest kept is %d: %w", rev, h.oldestRev, ErrCompacted)
	}
	return rev, nil
}

func (h *watchHub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.watchers
}
