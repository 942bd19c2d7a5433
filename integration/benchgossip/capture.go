package main

import (
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// burstCapture watches the process's runnable goroutines and, when they
// pass a threshold, or its own 20 ms tick comes late (a burst: many goroutines made runnable at once, which
// is what starts a cascade of false suspicions), writes what was running:
// the last seconds of an execution trace kept by a flight recorder, half
// a second after the burst began (go tool trace;
// `-d=parsed` prints its events, `-pprof=sched` the scheduler latency by
// stack), and then a goroutine dump (each goroutine's state and stack).
// The -v monitor samples once a second, too coarse to see the
// start of a burst.
type burstCapture struct {
	prefix    string
	threshold uint64
	fr        *trace.FlightRecorder
	cpu       *os.File
	out       io.Writer
	stop      chan struct{}
	done      chan struct{}
}

// maxCaptures bounds how many bursts are written per run: the first ones
// are what starts a cascade; later ones are the cascade.
const maxCaptures = 3

// stallAt: a watcher's tick this late is a stall worth capturing too (the
// process, or the machine, stopped running its goroutines for this long:
// a probe's timeout fires at every member).
const stallAt = 80 * time.Millisecond

// startCapture begins flight recording and watching; files are named
// prefix-N.goroutines and prefix-N.trace.
func startCapture(prefix string, threshold uint64, out io.Writer) (*burstCapture, error) {
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: 4 * time.Second, MaxBytes: 256 << 20})
	if err := fr.Start(); err != nil {
		return nil, fmt.Errorf("flight recorder: %w", err)
	}
	// A CPU profile running beside the flight recorder puts its samples
	// (stacks, every 10 ms of CPU) into the trace: what ran in a burst.
	cpu, err := os.Create(prefix + ".cpu")
	if err != nil {
		fr.Stop()
		return nil, err
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		fr.Stop()
		_ = cpu.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	b := &burstCapture{cpu: cpu, prefix: prefix, threshold: threshold, fr: fr, out: out, stop: make(chan struct{}), done: make(chan struct{})}
	go b.watch()
	return b, nil
}

func (b *burstCapture) Stop() {
	close(b.stop)
	<-b.done
	b.fr.Stop()
	pprof.StopCPUProfile()
	_ = b.cpu.Close()
}

func (b *burstCapture) watch() {
	defer close(b.done)
	s := []metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var last time.Time
	prev := time.Now()
	for n := 1; n <= maxCaptures; {
		var now time.Time
		select {
		case <-b.stop:
			return
		case now = <-t.C:
		}
		late := now.Sub(prev) - 20*time.Millisecond
		prev = now
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		r := s[0].Value.Uint64()
		if (r < b.threshold && late < stallAt) || time.Since(last) < 10*time.Second {
			continue
		}
		last = time.Now()
		base := fmt.Sprintf("%s-%d", b.prefix, n)
		n++
		fmt.Fprintf(b.out, "capture: %d runnable goroutines, the watcher's tick %s late, at %s\n", r, late.Round(time.Millisecond), last.UTC().Format("15:04:05.000"))
		select {
		case <-b.stop:
		case <-time.After(500 * time.Millisecond): // the trace shows the burst's start and how it goes on
		}
		err := writeFile(base+".trace", func(w io.Writer) error { _, err := b.fr.WriteTo(w); return err })
		fmt.Fprintf(b.out, "capture: trace %s.trace (%v)\n", base, err)
		err = writeFile(base+".goroutines", func(w io.Writer) error { return pprof.Lookup("goroutine").WriteTo(w, 2) })
		fmt.Fprintf(b.out, "capture: goroutine dump %s.goroutines (%v)\n", base, err)
	}
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
