package kinds

import (
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// autoscaling/v1 HorizontalPodAutoscaler manifests are served beside v2, as
// Kubernetes still serves them: decoded in their own schema and converted
// to the stored v2 object the way Kubernetes' conversion does
// (targetCPUUtilizationPercentage becomes a cpu Utilization metric).
func init() {
	hpaKind.Conversions = map[string]Conversion{"autoscaling/v1": {
		New:      func() Object { return &apiv1.HorizontalPodAutoscalerV1{} },
		ToStored: func(o Object) (Object, FieldErrors) { return hpaV1ToV2(o.(*apiv1.HorizontalPodAutoscalerV1)), nil },
	}}
}

func hpaV1ToV2(v1 *apiv1.HorizontalPodAutoscalerV1) *apiv1.HorizontalPodAutoscaler {
	out := &apiv1.HorizontalPodAutoscaler{Metadata: v1.GetMetadata()}
	if s := v1.GetSpec(); s != nil {
		out.Spec = &apiv1.HorizontalPodAutoscalerSpec{ScaleTargetRef: s.GetScaleTargetRef(), MinReplicas: s.MinReplicas, MaxReplicas: s.GetMaxReplicas()}
		if s.TargetCPUUtilizationPercentage != nil {
			out.Spec.Metrics = []*apiv1.MetricSpec{{Type: "Resource", Resource: &apiv1.ResourceMetricSource{
				Name: "cpu", Target: &apiv1.MetricTarget{Type: "Utilization", AverageUtilization: ptr(s.GetTargetCPUUtilizationPercentage())}}}}
		}
	}
	if st := v1.GetStatus(); st != nil {
		out.Status = &apiv1.HorizontalPodAutoscalerStatus{ObservedGeneration: st.ObservedGeneration, LastScaleTime: st.GetLastScaleTime(),
			CurrentReplicas: st.GetCurrentReplicas(), DesiredReplicas: st.GetDesiredReplicas()}
		if st.CurrentCPUUtilizationPercentage != nil {
			out.Status.CurrentMetrics = []*apiv1.MetricStatus{{Type: "Resource", Resource: &apiv1.ResourceMetricStatus{
				Name: "cpu", Current: &apiv1.MetricValueStatus{AverageUtilization: ptr(st.GetCurrentCPUUtilizationPercentage())}}}}
		}
	}
	return out
}
