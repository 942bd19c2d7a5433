package api

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
)

func TestWorkersEachRunsAllBoundedAndReuses(t *testing.T) {
	w := newWorkers()
	w.idle = 50 * time.Millisecond
	var running, peak, done atomic.Int64
	w.each(200, 8, func(i int) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Millisecond)
		running.Add(-1)
		done.Add(1)
	})
	if done.Load() != 200 {
		t.Fatalf("ran %d of 200", done.Load())
	}
	if peak.Load() > 8 {
		t.Fatalf("%d ran at once, limit 8", peak.Load())
	}
	// An idle worker takes the next task instead of a new goroutine.
	ran := make(chan struct{})
	testutil.WaitFor(t, 5*time.Second, "an idle worker to take a task", func() bool {
		select {
		case w.tasks <- func() { close(ran) }:
			return true
		default:
			return false
		}
	})
	<-ran
	// And idle workers exit.
	testutil.WaitFor(t, 5*time.Second, "idle workers to exit", func() bool { return w.live.Load() == 0 })
}
