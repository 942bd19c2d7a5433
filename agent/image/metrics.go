package image

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// pullMetrics count and time image pulls (shared downloads count once).
type pullMetrics struct {
	pulls   *prometheus.CounterVec
	seconds prometheus.Histogram
}

func newPullMetrics(reg prometheus.Registerer) *pullMetrics {
	m := &pullMetrics{
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "agent", Name: "image_pulls_total",
			Help: "Image pulls from registries, by result (success, error)."}, []string{"result"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "skiff", Subsystem: "agent", Name: "image_pull_seconds",
			Help: "Time of an image pull (manifest, config and missing layers).", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.pulls, m.seconds)
	}
	return m
}

func (m *pullMetrics) observe(start time.Time, err error) {
	res := "success"
	if err != nil {
		res = "error"
	}
	m.pulls.WithLabelValues(res).Inc()
	m.seconds.Observe(time.Since(start).Seconds())
}
