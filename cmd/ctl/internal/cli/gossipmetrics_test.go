package cli

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/skiffhq/skiff/agent/gossip"
	"github.com/skiffhq/skiff/integration/testutil"
)

// A gossip member's metrics: members by state from its own view, and
// probe rounds timed from memberlist's go-metrics.
func TestGossipMetrics(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(name string) *gossip.Gossip {
		g, err := gossip.Start(gossip.Config{Name: name, BindAddr: "127.0.0.1", BindPort: 0, AdvertiseAddr: "127.0.0.1", Key: key, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Leave(time.Second) })
		return g
	}
	a, b := start("a"), start("b")
	reg := prometheus.NewRegistry()
	if err := registerGossipMetrics(reg, a); err != nil {
		t.Fatal(err)
	}
	stale := start("stale")
	if err := registerGossipMetrics(reg, stale); err != nil {
		t.Fatal(err)
	}
	if err := registerGossipMetrics(reg, a); err != nil {
		t.Fatalf("registering again (a member started again): %v", err)
	}
	if _, err := b.Join(a.Addr()); err != nil {
		t.Fatal(err)
	}
	gather := func() map[string]*dto.MetricFamily {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*dto.MetricFamily{}
		for _, mf := range mfs {
			out[mf.GetName()] = mf
		}
		return out
	}
	alive := func() float64 {
		for _, m := range gather()["skiff_gossip_members"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" && l.GetValue() == "alive" {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	testutil.WaitFor(t, 10*time.Second, "2 alive members in a's metrics", func() bool { return alive() == 2 })
	testutil.WaitFor(t, 10*time.Second, "probe rounds timed", func() bool {
		return gather()["skiff_gossip_probe_seconds"].GetMetric()[0].GetHistogram().GetSampleCount() > 0
	})
}
