package netproxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	syncDuration *prometheus.HistogramVec
	syncErrors   prometheus.Counter
	rules        prometheus.Gauge
	endpoints    prometheus.Gauge
	servicePorts prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, backend string) *metrics {
	labels := prometheus.Labels{"backend": backend}
	m := &metrics{
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skiff_netproxy_sync_duration_seconds", Help: "Time to bring the kernel in line with Services and Endpoints.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"kind"}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_netproxy_sync_errors_total", Help: "Syncs that failed.", ConstLabels: labels}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_netproxy_rules", Help: "Kernel objects the proxy owns (nftables rules and map elements, or IPVS services and destinations).", ConstLabels: labels}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_netproxy_endpoints", Help: "Ready endpoints summed over service ports.", ConstLabels: labels}),
		servicePorts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_netproxy_service_ports", Help: "Service ports programmed.", ConstLabels: labels}),
	}
	if reg != nil {
		reg.MustRegister(m.syncDuration, m.syncErrors, m.rules, m.endpoints, m.servicePorts)
	}
	return m
}

// observe records a sync; readyEndpoints and servicePorts describe the
// desired state (kept as running totals: counting them here would make
// every small sync cost as much as the number of services).
func (m *metrics) observe(full bool, took time.Duration, res syncResult, readyEndpoints, servicePorts int, err error) {
	kind := "partial"
	if full {
		kind = "full"
	}
	if err != nil {
		m.syncErrors.Inc()
		return
	}
	m.syncDuration.WithLabelValues(kind).Observe(took.Seconds())
	m.rules.Set(float64(res.Rules))
	m.endpoints.Set(float64(readyEndpoints))
	m.servicePorts.Set(float64(servicePorts))
}
