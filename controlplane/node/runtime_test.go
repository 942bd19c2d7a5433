package node

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestTuneRuntimeRespectsTheEnvironment(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(1 << 62)
	TuneRuntime(log)
	if got := debug.SetGCPercent(100); got != GCPercent {
		t.Fatalf("GOGC unset: gc percent %d, want %d", got, GCPercent)
	}
	if total := availableMemory(); total > 0 {
		if got, want := debug.SetMemoryLimit(-1), int64(float64(total)*MemoryLimitFraction); got != want {
			t.Fatalf("GOMEMLIMIT unset: limit %d, want %d", got, want)
		}
	}

	t.Setenv("GOGC", "50")
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(1 << 30)
	TuneRuntime(log)
	if got := debug.SetGCPercent(100); got != 50 {
		t.Fatalf("GOGC=50 overridden: %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Fatalf("GOMEMLIMIT overridden: %d", got)
	}
}

func TestAvailableMemoryIsPlausible(t *testing.T) {
	if memTotal() == 0 {
		t.Skip("no /proc/meminfo here")
	}
	if got := availableMemory(); got < 64<<20 || got > memTotal() {
		t.Fatalf("available memory %d outside 64 MiB..MemTotal %d", got, memTotal())
	}
}
