package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
)

// TestCaptureWritesTraceAndDump: with a threshold every moment passes,
// -capture writes an execution trace (a Go trace file) and a goroutine
// dump that holds the goroutines' stacks, and says where.
func TestCaptureWritesTraceAndDump(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "burst")
	var out testutil.SyncBuffer
	bc, err := startCapture(prefix, 0, &out)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the goroutine dump of the first capture", func() bool {
		return strings.Contains(out.String(), "capture: goroutine dump "+prefix+"-1.goroutines (<nil>)")
	})
	bc.Stop()
	tr, err := os.ReadFile(prefix + "-1.trace")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(tr, []byte("go 1.")) {
		t.Errorf("%s-1.trace does not start as a Go execution trace: %q", prefix, tr[:min(len(tr), 16)])
	}
	dump, err := os.ReadFile(prefix + "-1.goroutines")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dump), "burstCapture).watch") {
		t.Errorf("goroutine dump does not hold the watcher's own stack:\n%.2000s", dump)
	}
	if fi, err := os.Stat(prefix + ".cpu"); err != nil || fi.Size() == 0 {
		t.Errorf("CPU profile %s.cpu: %v (empty or missing)", prefix, err)
	}
}

// TestWaveSize: a wave's broadcast storm stays within the budget (wave ×
// members ≤ 400) and a wave is never empty.
func TestWaveSize(t *testing.T) {
	for _, n := range []int{0, 1, 10, 32, 100, 200, 300, 400, 499, 800, 5000} {
		w := waveSize(n)
		if w < 1 || w > 25 || (w > 1 && w*n > 400) {
			t.Errorf("waveSize(%d) = %d, want 1..25 with wave × members ≤ 400 (or 1)", n, w)
		}
	}
	if waveSize(200) != 2 || waveSize(500) != 1 {
		t.Errorf("waveSize(200), waveSize(500) = %d, %d; want 2, 1", waveSize(200), waveSize(500))
	}
}
