package ctrlkit

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/controlplane/controllers"
)

// loopMetrics are every Base's: the depth of each of its queues, how long
// a reconcile takes and how many fail. The registry (controllers.Build)
// labels them with the controller's name; "queue" is "main" or an
// AddQueue name, both fixed in code.
type loopMetrics struct {
	seconds *prometheus.HistogramVec
	errors  *prometheus.CounterVec
	queues  atomic.Pointer[map[string]*controllers.Queue]
}

// mainQueue names the Base's own queue in the "queue" label.
const mainQueue = "main"

func newLoopMetrics(reg prometheus.Registerer) *loopMetrics {
	m := &loopMetrics{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "skiff", Subsystem: "controller", Name: "reconcile_seconds",
			Help:    "Time of one reconcile (sync of one key), failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"queue"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "controller", Name: "reconcile_errors_total",
			Help: "Reconciles that failed and were queued again (races with other writers included)."}, []string{"queue"}),
	}
	if reg == nil {
		return m
	}
	depth := prometheus.NewDesc("skiff_controller_queue_depth", "Keys waiting in the controller's queue (0 while this node is not the leader).", []string{"queue"}, nil)
	reg.MustRegister(m.seconds, m.errors, collectorFunc{desc: depth, collect: func(ch chan<- prometheus.Metric) {
		qs := m.queues.Load()
		if qs == nil {
			return
		}
		for name, q := range *qs {
			ch <- prometheus.MustNewConstMetric(depth, prometheus.GaugeValue, float64(q.Len()), name)
		}
	}})
	return m
}

// running records the queues of a Run (nil when it ends).
func (m *loopMetrics) running(qs map[string]*controllers.Queue) {
	if qs == nil {
		m.queues.Store(nil)
		return
	}
	m.queues.Store(&qs)
}

// observe records one reconcile of queue's key.
func (m *loopMetrics) observe(queue string, took time.Duration, err error) {
	m.seconds.WithLabelValues(queue).Observe(took.Seconds())
	if err != nil && !errors.Is(err, ErrPanic) {
		m.errors.WithLabelValues(queue).Inc()
	}
}

// collectorFunc collects one described family through a function.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
