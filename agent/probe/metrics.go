package probe

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count probe results by probe kind (startup, liveness,
// readiness) and result (success, failure), and time each check.
type Metrics struct {
	results *prometheus.CounterVec
	seconds *prometheus.HistogramVec
}

// NewMetrics registers the probe metrics on reg (nil: kept, not served).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "agent", Name: "probe_results_total",
			Help: "Container probe checks by probe kind and result."}, []string{"probe", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "skiff", Subsystem: "agent", Name: "probe_seconds",
			Help: "Time of one probe check.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"probe"}),
	}
	if reg != nil {
		reg.MustRegister(m.results, m.seconds)
	}
	return m
}

func (m *Metrics) observe(k Kind, res Result, took time.Duration) {
	if m == nil {
		return
	}
	r := "failure"
	if res.Success {
		r = "success"
	}
	m.results.WithLabelValues(string(k), r).Inc()
	m.seconds.WithLabelValues(string(k)).Observe(took.Seconds())
}
