package hpa

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/usage"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// Condition types and reasons (Kubernetes').
const (
	CondAbleToScale    = "AbleToScale"
	CondScalingActive  = "ScalingActive"
	CondScalingLimited = "ScalingLimited"
	ReasonNoMetrics    = "FailedGetResourceMetric"
	ReasonValidMetric  = "ValidMetricFound"
	ReasonTooMany      = "TooManyReplicas"
	ReasonTooFew       = "TooFewReplicas"
)

// tolerance: no scaling while usage is within 10% of the target.
const tolerance = 0.1

// defaultUtilization is autoscaling/v1's default CPU target.
const defaultUtilization = 80

// Controller reconciles HorizontalPodAutoscalers.
type Controller struct {
	*ctrlkit.Base
	hpas *ctrlkit.Cache
	pods *ctrlkit.Cache
	// usage is the agents' NodeMetrics (one per node, pods' usage inside).
	usage *ctrlkit.Cache
	rec   *client.Recorder

	mu   sync.Mutex
	recs map[string][]recommendation // by HPA uid: for scale-down stabilization
}

type recommendation struct {
	at       time.Time
	replicas int32
}

// DefaultConfig resyncs every 15 s, Kubernetes' HPA sync period.
func DefaultConfig(c *client.Client) ctrlkit.Config {
	cfg := ctrlkit.DefaultConfig(c)
	cfg.Resync = 15 * time.Second
	return cfg
}

// New returns the HPA controller.
func New(cfg ctrlkit.Config) *Controller {
	c := &Controller{recs: map[string][]recommendation{}}
	c.Base = ctrlkit.NewBase("horizontal-pod-autoscaler", cfg, c.sync)
	c.rec = client.NewRecorder(cfg.Client, "horizontal-pod-autoscaler", "")
	c.hpas = c.Watch("HorizontalPodAutoscaler", c.EnqueueHandler())
	c.pods = c.Watch("Pod", client.EventHandler{}) // read on each sync; resync paces the HPA
	c.usage = c.Watch("NodeMetrics", client.EventHandler{})
	return c
}

// target is what the HPA needs of its scale target.
type target struct {
	obj      client.Object
	replicas int32
	status   int32
	selector *apiv1.LabelSelector
	setSpec  func(n int32)
}

func (c *Controller) getTarget(ctx context.Context, ns string, ref *apiv1.CrossVersionObjectReference) (*target, error) {
	switch ref.GetKind() {
	case "Deployment":
		d, err := client.Get[*apiv1.Deployment](ctx, c.Client(), ns, ref.GetName())
		if err != nil {
			return nil, err
		}
		return &target{d, replicasOf(d.GetSpec().Replicas), d.GetStatus().GetReplicas(), d.GetSpec().GetSelector(), func(n int32) { d.Spec.Replicas = &n }}, nil
	case "ReplicaSet":
		r, err := client.Get[*apiv1.ReplicaSet](ctx, c.Client(), ns, ref.GetName())
		if err != nil {
			return nil, err
		}
		return &target{r, replicasOf(r.GetSpec().Replicas), r.GetStatus().GetReplicas(), r.GetSpec().GetSelector(), func(n int32) { r.Spec.Replicas = &n }}, nil
	case "StatefulSet":
		s, err := client.Get[*apiv1.StatefulSet](ctx, c.Client(), ns, ref.GetName())
		if err != nil {
			return nil, err
		}
		return &target{s, replicasOf(s.GetSpec().Replicas), s.GetStatus().GetReplicas(), s.GetSpec().GetSelector(), func(n int32) { s.Spec.Replicas = &n }}, nil
	case "ReplicationController":
		r, err := client.Get[*apiv1.ReplicationController](ctx, c.Client(), ns, ref.GetName())
		if err != nil {
			return nil, err
		}
		sel := r.GetSpec().GetSelector()
		if len(sel) == 0 {
			sel = r.GetSpec().GetTemplate().GetMetadata().GetLabels()
		}
		return &target{r, replicasOf(r.GetSpec().Replicas), r.GetStatus().GetReplicas(), &apiv1.LabelSelector{MatchLabels: sel}, func(n int32) { r.Spec.Replicas = &n }}, nil
	}
	return nil, fmt.Errorf("%w: scaleTargetRef kind %q (Deployment, ReplicaSet, StatefulSet, ReplicationController can be scaled)", errUnsupported, ref.GetKind())
}

var errUnsupported = errors.New("unsupported")

func replicasOf(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// cpuTarget returns the CPU utilisation target in percent; an error names
// a metric this controller cannot serve.
func cpuTarget(spec *apiv1.HorizontalPodAutoscalerSpec) (int32, error) {
	if len(spec.GetMetrics()) == 0 {
		return defaultUtilization, nil
	}
	for _, m := range spec.GetMetrics() {
		if m.GetType() == "Resource" && m.GetResource().GetName() == "cpu" && m.GetResource().GetTarget().GetType() == "Utilization" {
			if u := m.GetResource().GetTarget().AverageUtilization; u != nil && *u > 0 {
				return *u, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: only a Resource cpu metric with a Utilization target is supported", errUnsupported)
}

// Usage sums the CPU usage and requests of the pods that report metrics.
type Usage struct {
	Pods                int
	UsageMilli, Request int64
}

// MeasureCPU reads CPU usage from pods' status.metrics; pods without
// metrics are skipped, a pod with metrics but no CPU request is an error.
func MeasureCPU(pods []*apiv1.Pod) (Usage, error) {
	return MeasureCPUWith(pods, statusCPU)
}

func statusCPU(p *apiv1.Pod) (string, bool) {
	v, ok := p.GetStatus().GetMetrics().GetUsage()["cpu"]
	return v, ok
}

// MeasureCPUWith is MeasureCPU with each pod's CPU usage from cpu.
func MeasureCPUWith(pods []*apiv1.Pod, cpu func(*apiv1.Pod) (string, bool)) (Usage, error) {
	var u Usage
	for _, p := range pods {
		v, ok := cpu(p)
		if !ok {
			continue
		}
		q, err := apiv1.ParseQuantity(v)
		if err != nil {
			return u, fmt.Errorf("pod %s: metrics cpu %q: %w", p.GetMetadata().GetName(), v, err)
		}
		var req int64
		for _, ctr := range p.GetSpec().GetContainers() {
			r, ok := ctr.GetResources().GetRequests()["cpu"]
			if !ok {
				return u, fmt.Errorf("missing request for cpu in container %s of pod %s", ctr.GetName(), p.GetMetadata().GetName())
			}
			rq, err := apiv1.ParseQuantity(r)
			if err != nil {
				return u, fmt.Errorf("pod %s: request cpu %q: %w", p.GetMetadata().GetName(), r, err)
			}
			req += rq.MilliValue()
		}
		u.Pods++
		u.UsageMilli += q.MilliValue()
		u.Request += req
	}
	return u, nil
}

// podCPU is a pod's CPU usage from its node's fresh NodeMetrics (the
// agents' cgroup readings), else from its status.metrics.
func (c *Controller) podCPU(p *apiv1.Pod) (string, bool) {
	if obj, ok := c.usage.Get("", p.GetSpec().GetNodeName()); ok {
		m := obj.(*apiv1.NodeMetrics)
		if ts, err := time.Parse(time.RFC3339, m.GetTimestamp()); err == nil && usage.Fresh(ts, c.Now()) {
			for _, pu := range m.GetPods() {
				if pu.GetUid() == p.GetMetadata().GetUid() {
					v, ok := pu.GetUsage()["cpu"]
					return v, ok
				}
			}
		}
	}
	return statusCPU(p)
}

// Desired is the replica count for a utilisation target: current is kept
// within the tolerance.
func Desired(current int32, u Usage, targetPercent int32) (desired int32, utilization int32) {
	if u.Pods == 0 || u.Request == 0 {
		return current, 0
	}
	utilization = int32(u.UsageMilli * 100 / u.Request)
	ratio := float64(u.UsageMilli) * 100 / float64(u.Request) / float64(targetPercent)
	if math.Abs(ratio-1) <= tolerance {
		return current, utilization
	}
	return int32(math.Ceil(ratio * float64(u.Pods))), utilization
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := ctrlkit.SplitKey(key)
	obj, ok := c.hpas.Get(ns, name)
	if !ok {
		return nil
	}
	h := obj.(*apiv1.HorizontalPodAutoscaler)
	st := codec.Clone(h.GetStatus())
	if st == nil {
		st = &apiv1.HorizontalPodAutoscalerStatus{}
	}
	gen := h.GetMetadata().GetGeneration()
	st.ObservedGeneration = &gen
	now := c.Now().UTC()
	ts := now.Format(time.RFC3339)
	err := c.reconcile(ctx, h, st, ts)
	if proto.Equal(st, h.GetStatus()) {
		return err
	}
	next := codec.Clone(h)
	next.Status = st
	if _, uerr := ctrlkit.UpdateStatus(ctx, c.Client(), c.hpas, next); uerr != nil && !client.IsNotFound(uerr) {
		return errors.Join(err, uerr)
	}
	return err
}

func (c *Controller) reconcile(ctx context.Context, h *apiv1.HorizontalPodAutoscaler, st *apiv1.HorizontalPodAutoscalerStatus, ts string) error {
	ns := h.GetMetadata().GetNamespace()
	spec := h.GetSpec()
	tgt, err := c.getTarget(ctx, ns, spec.GetScaleTargetRef())
	if err != nil {
		reason := "FailedGetScale"
		if errors.Is(err, errUnsupported) {
			err = nil
		}
		setCondition(st, CondAbleToScale, "False", reason, fmt.Sprintf("the HPA controller was unable to get the target's current scale: %v", client.Reason(errOr(err, "unsupported target"))), ts)
		return err
	}
	st.CurrentReplicas = tgt.status
	setCondition(st, CondAbleToScale, "True", "SucceededGetScale", "the HPA controller was able to get the target's current scale", ts)
	if tgt.replicas == 0 {
		setCondition(st, CondScalingActive, "False", "ScalingDisabled", "scaling is disabled since the replica count of the target is zero", ts)
		st.DesiredReplicas = 0
		return nil
	}
	targetPct, err := cpuTarget(spec)
	if err != nil {
		setCondition(st, CondScalingActive, "False", "InvalidMetricSourceType", err.Error(), ts)
		return nil
	}
	var pods []*apiv1.Pod
	for _, p := range ctrlkit.Pods(c.pods, ns) {
		if ctrlkit.IsPodActive(p) && p.GetStatus().GetPhase() == ctrlkit.PodRunning && kinds.SelectorMatches(tgt.selector, p.GetMetadata().GetLabels()) {
			pods = append(pods, p)
		}
	}
	u, err := MeasureCPUWith(pods, c.podCPU)
	if err != nil {
		setCondition(st, CondScalingActive, "False", ReasonNoMetrics, "the HPA was unable to compute the replica count: "+err.Error(), ts)
		return nil
	}
	if u.Pods == 0 {
		setCondition(st, CondScalingActive, "False", ReasonNoMetrics,
			fmt.Sprintf("the HPA was unable to compute the replica count: unable to get metrics for resource cpu: no metrics returned from the %d pods", len(pods)), ts)
		st.DesiredReplicas = tgt.replicas
		return nil
	}
	setCondition(st, CondScalingActive, "True", ReasonValidMetric, "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)", ts)
	desired, utilization := Desired(tgt.replicas, u, targetPct)
	avg := fmt.Sprintf("%dm", u.UsageMilli/int64(u.Pods))
	st.CurrentMetrics = []*apiv1.MetricStatus{{Type: "Resource", Resource: &apiv1.ResourceMetricStatus{Name: "cpu",
		Current: &apiv1.MetricValueStatus{AverageUtilization: &utilization, AverageValue: avg}}}}
	minR := int32(1)
	if spec.MinReplicas != nil {
		minR = *spec.MinReplicas
	}
	switch {
	case desired > spec.GetMaxReplicas():
		desired = spec.GetMaxReplicas()
		setCondition(st, CondScalingLimited, "True", ReasonTooMany, "the desired replica count is more than the maximum replica count", ts)
	case desired < minR:
		desired = minR
		setCondition(st, CondScalingLimited, "True", ReasonTooFew, "the desired replica count is less than the minimum replica count", ts)
	default:
		setCondition(st, CondScalingLimited, "False", "DesiredWithinRange", "the desired count is within the acceptable range", ts)
	}
	desired = c.stabilize(h, desired)
	st.DesiredReplicas = desired
	if desired == tgt.replicas {
		setCondition(st, CondAbleToScale, "True", "ReadyForNewScale", "recommended size matches current size", ts)
		return nil
	}
	tgt.setSpec(desired)
	if _, err := client.Update(ctx, c.Client(), tgt.obj); err != nil {
		setCondition(st, CondAbleToScale, "False", "FailedUpdateScale", "the HPA controller was unable to update the target scale: "+client.Reason(err), ts)
		return fmt.Errorf("scale %s %s to %d: %w", spec.GetScaleTargetRef().GetKind(), spec.GetScaleTargetRef().GetName(), desired, err)
	}
	dir := "above"
	if desired < tgt.replicas {
		dir = "below"
	}
	c.event(ctx, h, client.EventNormal, "SuccessfulRescale", fmt.Sprintf("New size: %d; reason: cpu resource utilization (percentage of request) %s target", desired, dir))
	st.LastScaleTime = ts
	setCondition(st, CondAbleToScale, "True", "SucceededRescale", fmt.Sprintf("the HPA controller was able to update the target scale to %d", desired), ts)
	return nil
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// stabilize keeps scale-downs no lower than the highest recommendation of
// the scale-down stabilization window.
func (c *Controller) stabilize(h *apiv1.HorizontalPodAutoscaler, desired int32) int32 {
	window := 300 * time.Second
	if w := h.GetSpec().GetBehavior().GetScaleDown().StabilizationWindowSeconds; w != nil {
		window = time.Duration(*w) * time.Second
	}
	now := c.Now()
	uid := h.GetMetadata().GetUid()
	c.mu.Lock()
	defer c.mu.Unlock()
	recs := append(c.recs[uid], recommendation{now, desired})
	keep := recs[:0]
	out := desired
	for _, r := range recs {
		if now.Sub(r.at) <= window {
			keep = append(keep, r)
			out = max(out, r.replicas)
		}
	}
	c.recs[uid] = keep
	return out
}

func setCondition(st *apiv1.HorizontalPodAutoscalerStatus, typ, status, reason, msg, ts string) {
	for _, c := range st.Conditions {
		if c.GetType() == typ {
			if c.GetStatus() != status {
				c.LastTransitionTime = ts
			}
			c.Status, c.Reason, c.Message = status, reason, msg
			return
		}
	}
	st.Conditions = append(st.Conditions, &apiv1.HorizontalPodAutoscalerCondition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: ts})
}

func (c *Controller) event(ctx context.Context, obj client.Object, typ, reason, msg string) {
	if err := c.rec.Event(ctx, obj, typ, reason, msg); err != nil {
		c.Log.Debug("record event", "err", err)
	}
}
