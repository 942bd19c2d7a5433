package agent

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/agent/runtime"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// agentMetrics are the agent's: pod starts and their latency (the
// Kubernetes pod-startup SLI: creation to first reported Running), and the
// runtime operations it asks for. Labels take only values fixed in code.
type agentMetrics struct {
	podStarts      *prometheus.CounterVec
	podStartTime   prometheus.Histogram
	runtimeOps     *prometheus.CounterVec
	runtimeSeconds *prometheus.HistogramVec

	mu sync.Mutex
	// running: pods (by UID) whose Running status was counted.
	running map[string]bool
}

func newAgentMetrics(reg prometheus.Registerer) *agentMetrics {
	m := &agentMetrics{
		podStarts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "agent", Name: "pod_starts_total",
			Help: "Pods this agent started, by result (started: the sandbox is up and containers starting; failed)."}, []string{"result"}),
		podStartTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "skiff", Subsystem: "agent", Name: "pod_start_seconds",
			Help:    "Time from a pod's creation to the agent reporting it Running.",
			Buckets: []float64{.1, .25, .5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120}}),
		runtimeOps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "agent", Name: "runtime_operations_total",
			Help: "Container runtime operations (run_pod, stop_pod, remove_pod) by result."}, []string{"operation", "result"}),
		runtimeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "skiff", Subsystem: "agent", Name: "runtime_operation_seconds",
			Help: "Time of a container runtime operation.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"operation"}),
		running: map[string]bool{},
	}
	if reg != nil {
		reg.MustRegister(m.podStarts, m.podStartTime, m.runtimeOps, m.runtimeSeconds)
	}
	return m
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "success"
}

// op records one runtime operation.
func (m *agentMetrics) op(name string, start time.Time, err error) {
	m.runtimeSeconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
	m.runtimeOps.WithLabelValues(name, result(err)).Inc()
}

// statusWritten observes the start latency the first time a pod is
// reported Running.
func (m *agentMetrics) statusWritten(pod *apiv1.Pod, st *apiv1.PodStatus, now time.Time) {
	if st.GetPhase() != "Running" {
		return
	}
	uid := pod.GetMetadata().GetUid()
	m.mu.Lock()
	seen := m.running[uid]
	m.running[uid] = true
	m.mu.Unlock()
	if seen {
		return
	}
	if created, err := time.Parse(time.RFC3339, pod.GetMetadata().GetCreationTimestamp()); err == nil && !now.Before(created) {
		m.podStartTime.Observe(now.Sub(created).Seconds())
	}
}

// forget drops a removed pod.
func (m *agentMetrics) forget(uid string) {
	m.mu.Lock()
	delete(m.running, uid)
	m.mu.Unlock()
}

// instrumentedRuntime counts and times the runtime's mutating operations.
type instrumentedRuntime struct {
	PodRuntime
	m *agentMetrics
}

func (r instrumentedRuntime) RunPod(ctx context.Context, pod *runtime.Pod) error {
	start := time.Now()
	err := r.PodRuntime.RunPod(ctx, pod)
	r.m.op("run_pod", start, err)
	return err
}

func (r instrumentedRuntime) StopPod(ctx context.Context, uid string, grace *time.Duration) error {
	start := time.Now()
	err := r.PodRuntime.StopPod(ctx, uid, grace)
	r.m.op("stop_pod", start, err)
	return err
}

func (r instrumentedRuntime) RemovePod(ctx context.Context, uid string) error {
	start := time.Now()
	err := r.PodRuntime.RemovePod(ctx, uid)
	r.m.op("remove_pod", start, err)
	return err
}

// ImagesInUse passes the image collector's question on (New checked that
// the runtime answers it when an image collector is configured).
func (r instrumentedRuntime) ImagesInUse() map[string]bool {
	if u, ok := r.PodRuntime.(imagesInUse); ok {
		return u.ImagesInUse()
	}
	return nil
}

// Usage passes the usage report's reading on (UsageReader).
func (r instrumentedRuntime) Usage() []runtime.PodUsage {
	if u, ok := r.PodRuntime.(UsageReader); ok {
		return u.Usage()
	}
	return nil
}
