package agent

import (
	"testing"
	"time"
)

// A pod's volumes are refreshed once the interval passed, or at once when
// its labels or annotations changed; not on the pass that started it.
func TestVolumeRefreshDue(t *testing.T) {
	var v volumeRefresh
	p := basePod()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if v.due(p, t0) {
		t.Error("due on first sight (the start just converted the volumes)")
	}
	if v.due(p, t0.Add(volumeRefreshInterval/2)) {
		t.Error("due before the interval with nothing changed")
	}
	if !v.due(p, t0.Add(volumeRefreshInterval)) {
		t.Error("not due after the interval")
	}
	p.Metadata.Labels["app"] = "y"
	if !v.due(p, t0.Add(volumeRefreshInterval+time.Second)) {
		t.Error("not due after a label change")
	}
	v.forget(map[string]bool{})
	if v.due(p, t0.Add(2*volumeRefreshInterval)) {
		t.Error("a forgotten pod counts as seen")
	}
}
