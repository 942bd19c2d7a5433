package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// kvClient is one benchmark client's view of a system under test.
type kvClient interface {
	Put(ctx context.Context, key string, value []byte) error
	// Get is a linearizable single-key read.
	Get(ctx context.Context, key string) error
}

// op names the measured operation.
type op string

const (
	opWrite op = "write"
	opRead  op = "read"
)

// point is one measured (system, op, clients) combination.
type point struct {
	// Latencies of the operations counted, sorted.
	Latencies []time.Duration
	Ops       int
	Errors    int
	FirstErr  error
	Elapsed   time.Duration
	P50, P99  time.Duration
	// CPU is the CPU time the system and its clients used while measured.
	CPU time.Duration
	// LeaderChanges notes leader changes seen across the point ("" if none).
	LeaderChanges string
}

// merge pools two measurements of the same point.
func (p point) merge(q point) point {
	all := append(slices.Clone(p.Latencies), q.Latencies...)
	slices.Sort(all)
	m := point{
		Latencies: all, Ops: p.Ops + q.Ops, Errors: p.Errors + q.Errors, FirstErr: p.FirstErr,
		Elapsed: p.Elapsed + q.Elapsed, CPU: p.CPU + q.CPU,
		P50: percentile(all, 50), P99: percentile(all, 99),
		LeaderChanges: strings.TrimPrefix(p.LeaderChanges+" "+q.LeaderChanges, " "),
	}
	if m.FirstErr == nil {
		m.FirstErr = q.FirstErr
	}
	return m
}

// OpsPerSec is the measured throughput.
func (p point) OpsPerSec() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Ops) / p.Elapsed.Seconds()
}

// CPUPerOp is CPU time per completed operation.
func (p point) CPUPerOp() time.Duration {
	if p.Ops == 0 {
		return 0
	}
	return p.CPU / time.Duration(p.Ops)
}

// phaseHooks run when the measured window opens and closes (profiling, CPU
// accounting). Either may be nil.
type phaseHooks struct {
	start func()
	stop  func()
}

// opTimeout bounds one operation so a stuck request shows up as an error
// instead of hanging the run.
const opTimeout = 10 * time.Second

// runPoint drives clients concurrent loops of o against clientFor(i) for
// warmup+measure. Operations that complete inside the measured window count
// toward throughput and latency; each client stops starting new operations
// when the window closes.
func runPoint(ctx context.Context, o op, clients int, clientFor func(i int) kvClient,
	keys []string, value []byte, warmup, measure time.Duration, hooks phaseHooks) point {
	begin := time.Now()
	measureStart := begin.Add(warmup)
	measureEnd := measureStart.Add(measure)

	type workerResult struct {
		lat      []time.Duration
		errors   int
		firstErr error
	}
	results := make([]workerResult, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clientFor(i)
			rng := rand.New(rand.NewPCG(uint64(i)+1, uint64(begin.UnixNano())))
			r := &results[i]
			for ctx.Err() == nil {
				key := keys[rng.IntN(len(keys))]
				t0 := time.Now()
				if !t0.Before(measureEnd) {
					return
				}
				opCtx, cancel := context.WithTimeout(ctx, opTimeout)
				var err error
				if o == opWrite {
					err = c.Put(opCtx, key, value)
				} else {
					err = c.Get(opCtx, key)
				}
				t1 := time.Now()
				cancel()
				if t1.Before(measureStart) || t1.After(measureEnd) {
					continue
				}
				if err != nil {
					if r.firstErr == nil && !errors.Is(err, context.Canceled) {
						r.firstErr = err
					}
					r.errors++
					continue
				}
				r.lat = append(r.lat, t1.Sub(t0))
			}
		}()
	}
	sleepUntil(ctx, measureStart)
	if hooks.start != nil {
		hooks.start()
	}
	sleepUntil(ctx, measureEnd)
	if hooks.stop != nil {
		hooks.stop()
	}
	wg.Wait()

	var all []time.Duration
	var p point
	for _, r := range results {
		all = append(all, r.lat...)
		p.Errors += r.errors
		if p.FirstErr == nil {
			p.FirstErr = r.firstErr
		}
	}
	slices.Sort(all)
	p.Latencies = all
	p.Ops = len(all)
	p.Elapsed = measure
	p.P50 = percentile(all, 50)
	p.P99 = percentile(all, 99)
	return p
}

// percentile returns the q-th percentile (nearest rank) of sorted samples.
func percentile(sorted []time.Duration, q int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*q + 99) / 100 // ceil(n*q/100)
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// prefill writes every key once so reads find values, with a bounded
// number of concurrent writers.
// prefillAttempts is how often prefill sends one key's put before it gives up.
const prefillAttempts = 5

func prefill(ctx context.Context, clientFor func(i int) kvClient, writers int, keys []string, value []byte) error {
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clientFor(w)
			for k := w; k < len(keys); k += writers {
				// A put of a fixed value is idempotent, so a failed one
				// (a leader change on a loaded machine leaves outcomes
				// unknown) is simply sent again, a few times.
				var err error
				for attempt := 0; attempt < prefillAttempts && ctx.Err() == nil; attempt++ {
					opCtx, cancel := context.WithTimeout(ctx, opTimeout)
					err = c.Put(opCtx, keys[k], value)
					cancel()
					if err == nil {
						break
					}
				}
				if err != nil {
					errs[w] = fmt.Errorf("prefill %s (%d attempts): %w", keys[k], prefillAttempts, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
