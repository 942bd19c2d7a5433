package consensus

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	applySeconds  prometheus.Histogram
	commitSeconds prometheus.Histogram
	leaderChanges prometheus.Counter
	isLeader      prometheus.Gauge
}

var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

func newMetrics(reg prometheus.Registerer, s *Store) *metrics {
	m := &metrics{
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "skiff", Subsystem: "store", Name: "apply_seconds",
			Help:    "Time for a write on this node, from request to applied result (includes forwarding).",
			Buckets: latencyBuckets,
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "skiff", Subsystem: "store", Name: "commit_seconds",
			Help:    "Time on the leader from proposing an entry to its commit and apply.",
			Buckets: latencyBuckets,
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "store", Name: "leader_changes_total",
			Help: "Leader changes this node has observed.",
		}),
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "skiff", Subsystem: "store", Name: "is_leader",
			Help: "1 while this node is the Raft leader.",
		}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.applySeconds, m.commitSeconds, m.leaderChanges, m.isLeader,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "skiff", Subsystem: "store", Name: "watchers",
			Help: "Open watchers on this node.",
		}, func() float64 { return float64(s.fsm.hub.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "skiff", Subsystem: "store", Name: "revision",
			Help: "The store revision this node has applied.",
		}, func() float64 { return float64(s.fsm.currentRevision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "skiff", Subsystem: "store", Name: "applied_index",
			Help: "The Raft log index this node's FSM has applied.",
		}, func() float64 { return float64(s.fsm.applied.get()) }),
	)
	return m
}
