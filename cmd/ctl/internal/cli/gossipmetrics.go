package cli

import (
	"errors"
	"sync"
	"sync/atomic"

	gometrics "github.com/armon/go-metrics"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/agent/gossip"
)

// Gossip metrics, read from the caller's side so that agent/gossip stays
// free of them: members by state from the member's own view, and the
// probe latency that hashicorp/memberlist reports through go-metrics
// (memberlist.probeNode: one round of failure detection, indirect probes
// included), which a process-wide sink turns into a histogram.

var (
	gossipProbeOnce  sync.Once
	gossipProbeHisto = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "skiff", Subsystem: "gossip", Name: "probe_seconds",
		Help:    "Time of one failure-detection probe round of this process's gossip member (direct probe, then indirect ones when it fails).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	gossipMembersDesc = prometheus.NewDesc("skiff_gossip_members", "Members this node's gossip member knows, by state (alive, dead, left).", []string{"state"}, nil)
)

// registerGossipMetrics exports g's view and the probe latency on reg.
func registerGossipMetrics(reg prometheus.Registerer, g *gossip.Gossip) error {
	gossipProbeOnce.Do(func() {
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname, cfg.EnableRuntimeMetrics, cfg.EnableServiceLabel = false, false, false
		_, _ = gometrics.NewGlobal(cfg, probeSink{&gometrics.BlackholeSink{}})
	})
	if reg == nil {
		return nil
	}
	mc := &membersCollector{}
	mc.g.Store(g)
	for _, c := range []prometheus.Collector{gossipProbeHisto, mc} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
			// A member started again (after a failure) replaces the one
			// the registry reads.
			if old, ok := already.ExistingCollector.(*membersCollector); ok {
				old.g.Store(g)
			}
		}
	}
	return nil
}

// membersCollector reads the process's current gossip member.
type membersCollector struct{ g atomic.Pointer[gossip.Gossip] }

func (c *membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- gossipMembersDesc }

func (c *membersCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	for _, s := range []gossip.State{gossip.StateAlive, gossip.StateDead, gossip.StateLeft} {
		counts[s.String()] = 0
	}
	for _, m := range c.g.Load().Members() {
		counts[m.State.String()]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(gossipMembersDesc, prometheus.GaugeValue, float64(n), state)
	}
}

// probeSink keeps memberlist's probe timings (milliseconds) and drops
// every other go-metrics sample (raft's among them).
type probeSink struct{ *gometrics.BlackholeSink }

func (probeSink) AddSample(key []string, val float32) {
	if len(key) == 2 && key[0] == "memberlist" && key[1] == "probeNode" {
		gossipProbeHisto.Observe(float64(val) / 1000)
	}
}

func (s probeSink) AddSampleWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.AddSample(key, val)
}
