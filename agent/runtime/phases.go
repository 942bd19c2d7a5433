package runtime

import (
	"context"
	"log/slog"
	"time"
)

// Log messages that carry a pod start's phase durations (at Debug level):
// the benchmark and an operator with debug logs see where start time goes.
const (
	MsgSandboxPhases   = "pod sandbox created"
	MsgContainerPhases = "container started"
)

// phaseClock times consecutive steps of one operation.
type phaseClock struct {
	start, last time.Time
	attrs       []slog.Attr
}

func newPhaseClock() *phaseClock {
	now := time.Now()
	return &phaseClock{start: now, last: now}
}

// mark ends the step called name.
func (pc *phaseClock) mark(name string) {
	now := time.Now()
	pc.attrs = append(pc.attrs, slog.Duration(name, now.Sub(pc.last)))
	pc.last = now
}

// log writes the steps and the total at Debug level.
func (pc *phaseClock) log(l *slog.Logger, msg string, attrs ...slog.Attr) {
	if !l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	all := append(attrs, slog.Duration("total", time.Since(pc.start)))
	l.LogAttrs(context.Background(), slog.LevelDebug, msg, append(all, pc.attrs...)...)
}
