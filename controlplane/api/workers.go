package api

import (
	"sync"
	"sync/atomic"
	"time"
)

// workers runs functions on goroutines that outlive one function: a new
// goroutine starts with a small stack and grows it, by copying, to fit the
// object decoders and validation, which cost as much as the work itself
// when CreateMany started a goroutine per object. A worker idle for
// workerIdle exits, so the pool follows the load down.
type workers struct {
	tasks chan func()
	idle  time.Duration
	live  atomic.Int64 // running workers
}

const workerIdle = 10 * time.Second

func newWorkers() *workers { return &workers{tasks: make(chan func()), idle: workerIdle} }

// do runs f on an idle worker, or on a new one when none is idle.
func (w *workers) do(f func()) {
	select {
	case w.tasks <- f:
	default:
		go w.work(f)
	}
}

func (w *workers) work(f func()) {
	w.live.Add(1)
	defer w.live.Add(-1)
	f()
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		select {
		case f := <-w.tasks:
			f()
			t.Reset(w.idle)
		case <-t.C:
			return
		}
	}
}

// each runs f(0) … f(n-1) with at most parallel running at once and
// returns when all have.
func (w *workers) each(n, parallel int, f func(i int)) {
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		sem <- struct{}{}
		w.do(func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		})
	}
	wg.Wait()
}
