package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/skiffhq/skiff/agent/runtime"
)

// phaseCollector is a slog.Handler that keeps the phase durations the
// runtime logs at Debug level for each pod start, so the benchmark can show
// where the time goes.
type phaseCollector struct {
	mu      sync.Mutex
	enabled bool
	// durations[message][phase]
	durations map[string]map[string][]time.Duration
	order     map[string][]string
}

func newPhaseCollector() *phaseCollector {
	return &phaseCollector{durations: map[string]map[string][]time.Duration{}, order: map[string][]string{}}
}

func (pc *phaseCollector) Enabled(context.Context, slog.Level) bool { return true }
func (pc *phaseCollector) WithAttrs([]slog.Attr) slog.Handler       { return pc }
func (pc *phaseCollector) WithGroup(string) slog.Handler            { return pc }

func (pc *phaseCollector) Handle(_ context.Context, r slog.Record) error {
	if r.Message != runtime.MsgSandboxPhases && r.Message != runtime.MsgContainerPhases {
		if r.Level >= slog.LevelWarn {
			progress("runtime: %s %v", r.Message, r)
		}
		return nil
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if !pc.enabled {
		return nil
	}
	m := pc.durations[r.Message]
	if m == nil {
		m = map[string][]time.Duration{}
		pc.durations[r.Message] = m
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindDuration {
			if _, ok := m[a.Key]; !ok {
				pc.order[r.Message] = append(pc.order[r.Message], a.Key)
			}
			m[a.Key] = append(m[a.Key], a.Value.Duration())
		}
		return true
	})
	return nil
}

func (pc *phaseCollector) setEnabled(on bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.enabled = on
}

func (pc *phaseCollector) reset() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.durations = map[string]map[string][]time.Duration{}
	pc.order = map[string][]string{}
}

// print writes p50/p99 of every phase seen.
func (pc *phaseCollector) print(title string) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	msgs := make([]string, 0, len(pc.durations))
	for m := range pc.durations {
		msgs = append(msgs, m)
	}
	sort.Strings(msgs)
	fmt.Printf("\nphases, %s (p50 / p99 ms)\n", title)
	for _, m := range msgs {
		fmt.Printf("  %s:", m)
		for _, k := range pc.order[m] {
			ds := pc.durations[m][k]
			fmt.Printf(" %s %.1f/%.1f", k, ms(pct(ds, .5)), ms(pct(ds, .99)))
		}
		fmt.Println()
	}
}
