package api

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLimiterCountsPerSubject(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := newLimiter(Limits{WatchesPerIdentity: 1, StreamsPerIdentity: 2, ExemptGroups: []string{"skiff:control"}}, reg)
	viewer := WithIdentity(context.Background(), Identity{User: "alice", Groups: []string{"skiff:viewers"}})
	sameNameOtherGroup := WithIdentity(context.Background(), Identity{User: "alice", Groups: []string{"skiff:admins"}})
	control := WithIdentity(context.Background(), Identity{User: "control:c1", Groups: []string{"skiff:control"}})

	release, err := l.acquire(viewer, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.acquire(viewer, true); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second watch: %v", err)
	}
	if _, err := l.acquire(sameNameOtherGroup, true); err != nil {
		t.Fatalf("another subject with the same name: %v", err)
	}
	unary, err := l.acquire(viewer, false)
	if err != nil {
		t.Fatalf("a call beside the watch: %v", err)
	}
	if _, err := l.acquire(viewer, false); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third call: %v", err)
	}
	for i := 0; i < 10; i++ {
		if _, err := l.acquire(control, true); err != nil {
			t.Fatalf("exempt group, watch %d: %v", i, err)
		}
	}
	if w, calls, refused := metricValue(t, reg, "skiff_api_watches_open"), metricValue(t, reg, "skiff_api_streams_open"), metricValue(t, reg, "skiff_api_limit_refusals_total"); w != 2 || calls != 3 || refused != 2 {
		t.Fatalf("metrics: %v watches, %v calls open, %v refusals; want 2, 3, 2 (exempt identities are not counted)", w, calls, refused)
	}
	release()
	unary()
	if w, s := l.heldBy(Identity{User: "alice", Groups: []string{"skiff:viewers"}}); w != 0 || s != 0 {
		t.Fatalf("after release: %d watches, %d calls", w, s)
	}
	if _, ok := l.held[subjectKey(Identity{User: "alice", Groups: []string{"skiff:viewers"}})]; ok {
		t.Fatal("an idle identity stays in the map")
	}
	if len(l.held) != 1 { // the other alice still holds her watch; control is not counted
		t.Fatalf("held map has %d identities, want 1", len(l.held))
	}
}

// metricValue sums a gauge's or counter's series in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		sum := 0.0
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return sum
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// BenchmarkLimiterAcquireRelease is what the caps add to every call
// (BENCHMARKS.md "API input checks and limits").
func BenchmarkLimiterAcquireRelease(b *testing.B) {
	l := newLimiter(Limits{}, nil)
	ctx := WithIdentity(context.Background(), Identity{User: "node:w1", Groups: []string{"skiff:nodes"}})
	b.ReportAllocs()
	for b.Loop() {
		release, err := l.acquire(ctx, false)
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}
