package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSmallRun is make bench-gossip at 10 members (3 deaths, 5 s of 5 %
// loss): every death is confirmed at the leader's member within LANTiming's
// bound, every member learns it, the loss phase really drops packets and
// declares no live member dead, and the output ends with the summary line.
func TestSmallRun(t *testing.T) {
	var out bytes.Buffer
	res, err := run(&out, params{sizes: []int{10}, rounds: 3, loss: 5 * time.Second, lossRate: 0.05})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(res) != 1 || len(res[0].detect) != 3 {
		t.Fatalf("results %+v, want one size with 3 deaths", res)
	}
	r := res[0]
	// LANTiming at 10 members: suspicion 0.9 s, at most 1.8 s without
	// confirmations, after a probe round (0.3 s) and its indirect probes.
	const bound = 4 * time.Second
	for i := range r.detect {
		if r.detect[i] <= 0 || r.detect[i] > bound || r.converge[i] < r.detect[i] || r.converge[i] > bound+time.Second {
			t.Errorf("death %d: detected after %s, every member after %s; want 0 < detect ≤ %s ≤ converge", i, r.detect[i], r.converge[i], bound)
		}
	}
	if r.lossSent == 0 || r.lossDropped == 0 || float64(r.lossDropped) > 0.1*float64(r.lossSent) {
		t.Errorf("loss phase dropped %d of %d packets, want about 5 %%", r.lossDropped, r.lossSent)
	}
	if r.falseLoss != 0 || r.falseDetect != 0 {
		t.Errorf("live members declared dead: %d while members died, %d under 5 %% loss; want none", r.falseDetect, r.falseLoss)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	if !regexp.MustCompile(`^gossip-bench: members=10 detect_p50_ms=\d+ detect_p99_ms=\d+ converge_ms=\d+ false_positives=\d+$`).MatchString(last) {
		t.Errorf("last line %q is not the summary line\n%s", last, out.String())
	}
}
