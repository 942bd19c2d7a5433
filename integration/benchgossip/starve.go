package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// countingHandler counts memberlist's warnings that mean a member fell
// behind (whatever the bench log's level or destination), so that a failed
// run says why with numbers. Handler (nil: none) gets the records at its
// own level.
type countingHandler struct {
	slog.Handler
	ev *events
}

// events counts what memberlist logs when a member falls behind or the
// failure detector acts: the cascade's signs, in the order they come.
type events struct {
	// queueFull: a message dropped on a full handler queue; udpFailed: a
	// probe answered over TCP only (acks over UDP came too late).
	queueFull, udpFailed atomic.Int64
	// suspects: a member's own probe failed and it suspects the target;
	// deaths: a suspicion ran out (the member declares the target dead);
	// refutes: a member told it is suspect or dead refutes it.
	suspects, deaths, refutes atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case strings.Contains(r.Message, "handler queue full"):
		h.ev.queueFull.Add(1)
	case strings.Contains(r.Message, "UDP probes failed"):
		h.ev.udpFailed.Add(1)
	case strings.Contains(r.Message, "no acks received"):
		h.ev.suspects.Add(1)
	case strings.Contains(r.Message, "suspect timeout reached"):
		h.ev.deaths.Add(1)
	case strings.Contains(r.Message, "Refuting a"):
		h.ev.refutes.Add(1)
	}
	if h.Handler == nil || !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	if h.Handler == nil {
		return h
	}
	return countingHandler{Handler: h.Handler.WithAttrs(a), ev: h.ev}
}

func (h countingHandler) WithGroup(n string) slog.Handler {
	if h.Handler == nil {
		return h
	}
	return countingHandler{Handler: h.Handler.WithGroup(n), ev: h.ev}
}

// cpuMeter measures the CPU this process got over a span, as a share of
// GOMAXPROCS cores: on a shared machine the members get only what the
// scheduler leaves them.
type cpuMeter struct {
	wall time.Time
	cpu  time.Duration
}

func startCPU() cpuMeter { return cpuMeter{wall: time.Now(), cpu: processCPU()} }

// String: "0.42 of 2 cores over 80s, load average 9.3".
func (m cpuMeter) String() string {
	wall := time.Since(m.wall)
	used := processCPU() - m.cpu
	return fmt.Sprintf("this process got %.2f of %d cores over %s, load average %s", used.Seconds()/wall.Seconds(), runtime.GOMAXPROCS(0), wall.Round(time.Second), loadAverage())
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAverage is the 1-minute load average ("?" where unknown).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// steadyCPU runs the formed cluster idle for span and returns the CPU this
// process used per member per second (the members' steady cost: probes,
// acks, push/pulls, encryption); with profile set it writes a CPU profile
// of the span there.
func (c *cluster) steadyCPU(span time.Duration, profile string) (time.Duration, error) {
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return 0, fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := processCPU()
	time.Sleep(span)
	used := processCPU() - start
	return time.Duration(float64(used) / float64(c.size()) / span.Seconds()), nil
}

// profilePath is base with the size and timing before its extension
// ("" when base is "").
func profilePath(base string, n int, timing string) string {
	if base == "" {
		return ""
	}
	ext := filepath.Ext(base)
	tag := "lan"
	if timing != "LANTiming" {
		tag = "defaults"
	}
	return fmt.Sprintf("%s-%d-%s%s", strings.TrimSuffix(base, ext), n, tag, ext)
}
