package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// monitor prints, every interval, what the process got and how far behind
// its goroutines ran, beside the failure detector's events: the timeline
// that shows whether a cascade follows starvation or causes it. A line:
//
//	monitor: 18:58:01 t=12s members=150 cpu=0.84 osWait=0.31 timerLateMax=40ms schedP50=0.1ms schedP99=12ms schedMax=50ms runnable=20 goroutines=1500 gcCPU=0.08 heapLiveMB=40 suspects=3 deaths=0 refutes=1 udpFailed=2 queueFull=0
//
// cpu is the CPU this process used per wall second (of GOMAXPROCS cores);
// osWait the time its threads sat runnable in the kernel's run queue per
// wall second (the machine's other load taking the cores); timerLateMax
// the most a 10 ms sleep overslept; sched* the
// Go scheduler's latencies (runnable to running) in the interval — what a
// probe's ack waits at each goroutine hand-off; gcCPU the garbage
// collector's share of the runtime's busy CPU estimate; heapLiveMB the heap
// the last GC found live (the members' node states, n² in all). Counters
// are per interval.
type monitor struct {
	// lateMax is the most a 10 ms sleep overslept since the last line
	// (ns): how late a member's timer (a probe timeout, a gossip tick)
	// fires, whatever the cause — kernel run queue, Go scheduler, GC.
	lateMax atomic.Int64
	c       *cluster
	out     io.Writer
	start   time.Time
	stop    chan struct{}
	done    chan struct{}
}

func startMonitor(c *cluster, out io.Writer, every time.Duration) *monitor {
	m := &monitor{c: c, out: out, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go m.run(every)
	go m.measureLateness()
	return m
}

func (m *monitor) Stop() {
	close(m.stop)
	<-m.done
}

var monitorMetrics = []string{"/sched/latencies:seconds", "/sched/goroutines/runnable:goroutines", "/sched/goroutines:goroutines",
	"/cpu/classes/gc/total:cpu-seconds", "/cpu/classes/total:cpu-seconds", "/cpu/classes/idle:cpu-seconds", "/gc/heap/live:bytes"}

type monitorSample struct {
	at                time.Time
	cpu               time.Duration
	osWait            time.Duration
	sched             *metrics.Float64Histogram
	gcCPU, busyCPU    float64
	runnable, goroutn uint64
	heapLive          uint64
	suspects, deaths  int64
	refutes, udp, qf  int64
}

func (m *monitor) sample() monitorSample {
	s := make([]metrics.Sample, len(monitorMetrics))
	for i, n := range monitorMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	out := monitorSample{at: time.Now(), cpu: processCPU(), osWait: runQueueWait()}
	if s[0].Value.Kind() == metrics.KindFloat64Histogram {
		h := s[0].Value.Float64Histogram()
		out.sched = &metrics.Float64Histogram{Counts: append([]uint64(nil), h.Counts...), Buckets: h.Buckets}
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		out.runnable = s[1].Value.Uint64()
	}
	if s[2].Value.Kind() == metrics.KindUint64 {
		out.goroutn = s[2].Value.Uint64()
	}
	if s[3].Value.Kind() == metrics.KindFloat64 && s[4].Value.Kind() == metrics.KindFloat64 && s[5].Value.Kind() == metrics.KindFloat64 {
		out.gcCPU = s[3].Value.Float64()
		out.busyCPU = s[4].Value.Float64() - s[5].Value.Float64()
	}
	if s[6].Value.Kind() == metrics.KindUint64 {
		out.heapLive = s[6].Value.Uint64()
	}
	ev := &m.c.ev
	out.suspects, out.deaths, out.refutes, out.udp, out.qf = ev.suspects.Load(), ev.deaths.Load(), ev.refutes.Load(), ev.udpFailed.Load(), ev.queueFull.Load()
	return out
}

func (m *monitor) run(every time.Duration) {
	defer close(m.done)
	prev := m.sample()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		cur := m.sample()
		wall := cur.at.Sub(prev.at).Seconds()
		if wall < every.Seconds()/2 {
			continue // a tick delivered late, right before the next: too short a span to mean much
		}
		cpu := (cur.cpu - prev.cpu).Seconds()
		gcShare := 0.0
		if busy := cur.busyCPU - prev.busyCPU; busy > 0 {
			// The runtime's CPU classes are estimates from wall time (a
			// starved process looks busy): compared only with each
			// other, as the runtime's documentation says.
			gcShare = (cur.gcCPU - prev.gcCPU) / busy
		}
		p50, p99, pmax := histDelta(prev.sched, cur.sched)
		fmt.Fprintf(m.out, "monitor: %s t=%s members=%d cpu=%.2f osWait=%.2f timerLateMax=%s schedP50=%s schedP99=%s schedMax=%s runnable=%d goroutines=%d gcCPU=%.2f heapLiveMB=%d suspects=%d deaths=%d refutes=%d udpFailed=%d queueFull=%d load=%s\n",
			cur.at.UTC().Format("15:04:05"), cur.at.Sub(m.start).Round(time.Second), m.c.size(), cpu/wall, (cur.osWait-prev.osWait).Seconds()/wall, time.Duration(m.lateMax.Swap(0)).Round(time.Millisecond),
			p50, p99, pmax, cur.runnable, cur.goroutn, gcShare, cur.heapLive>>20,
			cur.suspects-prev.suspects, cur.deaths-prev.deaths, cur.refutes-prev.refutes, cur.udp-prev.udp, cur.qf-prev.qf, loadAverage())
		prev = cur
	}
}

// measureLateness sleeps 10 ms at a time and records the most it
// overslept, until the monitor stops.
func (m *monitor) measureLateness() {
	const nap = 10 * time.Millisecond
	for {
		select {
		case <-m.stop:
			return
		default:
		}
		t0 := time.Now()
		time.Sleep(nap)
		late := int64(time.Since(t0) - nap)
		for {
			cur := m.lateMax.Load()
			if late <= cur || m.lateMax.CompareAndSwap(cur, late) {
				break
			}
		}
	}
}

// schedLatencies reads the Go scheduler's cumulative latency histogram.
func schedLatencies() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	h := s[0].Value.Float64Histogram()
	return &metrics.Float64Histogram{Counts: append([]uint64(nil), h.Counts...), Buckets: h.Buckets}
}

// histDelta is the p50, p99 and largest bucket of the latencies recorded
// between two readings of a cumulative histogram (upper bucket bounds).
func histDelta(a, b *metrics.Float64Histogram) (p50, p99, pmax time.Duration) {
	if a == nil || b == nil || len(a.Counts) != len(b.Counts) {
		return
	}
	d := make([]uint64, len(b.Counts))
	var total uint64
	for i := range d {
		d[i] = b.Counts[i] - a.Counts[i]
		total += d[i]
	}
	if total == 0 {
		return
	}
	at := func(q float64) time.Duration {
		want := uint64(math.Ceil(q * float64(total)))
		var run uint64
		for i, n := range d {
			run += n
			if run >= want {
				return bucketTop(b.Buckets[i+1])
			}
		}
		return 0
	}
	for i := len(d) - 1; i >= 0; i-- {
		if d[i] > 0 {
			pmax = bucketTop(b.Buckets[i+1])
			break
		}
	}
	return at(.5), at(.99), pmax
}

func bucketTop(sec float64) time.Duration {
	if math.IsInf(sec, 1) {
		return time.Hour
	}
	return time.Duration(sec * float64(time.Second)).Round(time.Microsecond)
}

// runQueueWait is the time this process's threads waited in the kernel's
// run queues, runnable but not running (schedstat's second field, summed
// over the threads): what the machine's other load took from it.
func runQueueWait() time.Duration {
	tasks, _ := filepath.Glob("/proc/self/task/*/schedstat")
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			sum += time.Duration(ns)
		}
	}
	return sum
}
