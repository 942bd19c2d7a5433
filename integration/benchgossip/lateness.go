package main

import (
	"slices"
	"sync"
	"time"
)

// lateness records how late a 10 ms sleep wakes, for as long as the
// bench runs: what a member's probe timeout sees of the machine. A probe
// fails when its ack is not handled within LANTiming's 100 ms direct
// timeout and 200 ms probe interval, so a run whose timers wake hundreds
// of milliseconds late measures the machine's stalls, not gossip: the
// table prints the stalls of each phase beside its false positives.
type lateness struct {
	mu      sync.Mutex
	samples []lateSample
}

type lateSample struct {
	at   time.Time
	late time.Duration
}

// lateNap is the sleep whose oversleep is measured.
const lateNap = 10 * time.Millisecond

// machineLateness runs for the whole process (started by run).
var machineLateness = &lateness{}

var startLateness = sync.OnceFunc(func() { go machineLateness.record() })

func (l *lateness) record() {
	for {
		t0 := time.Now()
		time.Sleep(lateNap)
		now := time.Now()
		l.mu.Lock()
		l.samples = append(l.samples, lateSample{at: now, late: now.Sub(t0) - lateNap})
		l.mu.Unlock()
	}
}

// window is the p99 and the largest oversleep of the naps that ended
// between from and to.
func (l *lateness) window(from, to time.Time) (p99, worst time.Duration) {
	l.mu.Lock()
	var ds []time.Duration
	for _, s := range l.samples {
		if !s.at.Before(from) && !s.at.After(to) {
			ds = append(ds, s.late)
		}
	}
	l.mu.Unlock()
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return pct(ds, .99), ds[len(ds)-1]
}
