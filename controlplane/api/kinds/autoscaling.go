package kinds

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

var hpaKind = define(Kind{
	Name: "HorizontalPodAutoscaler", Plural: "horizontalpodautoscalers", Singular: "horizontalpodautoscaler",
	ShortNames: []string{"hpa"}, Group: "autoscaling",
	APIVersions: []string{"autoscaling/v2"},
	Retired:     map[string]string{"autoscaling/v2beta1": "removed in Kubernetes 1.25", "autoscaling/v2beta2": "removed in Kubernetes 1.26"},
	Namespaced:  true,
	newObject:   func() Object { return &apiv1.HorizontalPodAutoscaler{} },
	columns: []Column{{Name: "NAME"}, {Name: "REFERENCE"}, {Name: "TARGETS"}, {Name: "MINPODS"}, {Name: "MAXPODS"},
		{Name: "REPLICAS"}, {Name: "AGE"}},
}, defaultHPA, validateHPA, func(h *apiv1.HorizontalPodAutoscaler, now time.Time) []string {
	ref := h.GetSpec().GetScaleTargetRef()
	var targets []string
	for i, m := range h.GetSpec().GetMetrics() {
		cur := "<unknown>"
		if i < len(h.GetStatus().GetCurrentMetrics()) {
			c := h.GetStatus().GetCurrentMetrics()[i]
			if cv := c.GetResource().GetCurrent(); cv != nil && cv.AverageUtilization != nil {
				cur = fmt.Sprintf("%d%%", *cv.AverageUtilization)
			} else if v := c.GetResource().GetCurrent().GetAverageValue(); v != "" {
				cur = v
			}
		}
		if m.GetResource() != nil {
			t := m.GetResource().GetTarget()
			want := t.GetAverageValue()
			if t != nil && t.AverageUtilization != nil {
				want = fmt.Sprintf("%d%%", *t.AverageUtilization)
			}
			targets = append(targets, fmt.Sprintf("%s: %s/%s", m.GetResource().GetName(), cur, want))
		} else {
			targets = append(targets, m.GetType())
		}
	}
	return []string{h.GetMetadata().GetName(), ref.GetKind() + "/" + ref.GetName(), joinOrNone(targets),
		strconv.Itoa(int(h.GetSpec().GetMinReplicas())), strconv.Itoa(int(h.GetSpec().GetMaxReplicas())),
		strconv.Itoa(int(h.GetStatus().GetCurrentReplicas())), age(h.GetMetadata().GetCreationTimestamp(), now)}
})

// defaultHPA follows SetDefaults_HorizontalPodAutoscaler (autoscaling/v2).
func defaultHPA(h *apiv1.HorizontalPodAutoscaler) {
	if h.Spec == nil {
		h.Spec = &apiv1.HorizontalPodAutoscalerSpec{}
	}
	s := h.Spec
	if s.MinReplicas == nil {
		s.MinReplicas = ptr[int32](1)
	}
	if len(s.Metrics) == 0 {
		s.Metrics = []*apiv1.MetricSpec{{Type: "Resource", Resource: &apiv1.ResourceMetricSource{
			Name: "cpu", Target: &apiv1.MetricTarget{Type: "Utilization", AverageUtilization: ptr[int32](80)}}}}
	}
	if s.Behavior == nil {
		s.Behavior = &apiv1.HorizontalPodAutoscalerBehavior{}
	}
	if s.Behavior.ScaleUp == nil {
		s.Behavior.ScaleUp = &apiv1.HPAScalingRules{}
	}
	up := s.Behavior.ScaleUp
	if up.StabilizationWindowSeconds == nil {
		up.StabilizationWindowSeconds = ptr[int32](0)
	}
	if up.SelectPolicy == nil {
		up.SelectPolicy = ptr("Max")
	}
	if len(up.Policies) == 0 {
		up.Policies = []*apiv1.HPAScalingPolicy{{Type: "Pods", Value: 4, PeriodSeconds: 15}, {Type: "Percent", Value: 100, PeriodSeconds: 15}}
	}
	if s.Behavior.ScaleDown == nil {
		s.Behavior.ScaleDown = &apiv1.HPAScalingRules{}
	}
	down := s.Behavior.ScaleDown
	if down.StabilizationWindowSeconds == nil {
		down.StabilizationWindowSeconds = ptr[int32](300)
	}
	if down.SelectPolicy == nil {
		down.SelectPolicy = ptr("Max")
	}
	if len(down.Policies) == 0 {
		down.Policies = []*apiv1.HPAScalingPolicy{{Type: "Percent", Value: 100, PeriodSeconds: 15}}
	}
}

func validateHPA(h *apiv1.HorizontalPodAutoscaler) FieldErrors {
	s := h.GetSpec()
	if s == nil {
		return FieldErrors{Required("spec", "")}
	}
	var errs FieldErrors
	ref := s.GetScaleTargetRef()
	if ref.GetKind() == "" {
		errs = append(errs, Required("spec.scaleTargetRef.kind", ""))
	}
	if ref.GetName() == "" {
		errs = append(errs, Required("spec.scaleTargetRef.name", ""))
	} else {
		errs = append(errs, check("spec.scaleTargetRef.name", ref.GetName(), IsDNS1123Subdomain(ref.GetName()))...)
	}
	if s.MinReplicas != nil && *s.MinReplicas < 1 {
		errs = append(errs, Invalid("spec.minReplicas", *s.MinReplicas, "must be greater than or equal to 1"))
	}
	if s.GetMaxReplicas() < 1 {
		errs = append(errs, Invalid("spec.maxReplicas", s.GetMaxReplicas(), "must be greater than or equal to 1"))
	} else if s.MinReplicas != nil && s.GetMaxReplicas() < *s.MinReplicas {
		errs = append(errs, Invalid("spec.maxReplicas", s.GetMaxReplicas(), "must be greater than or equal to minReplicas"))
	}
	for i, m := range s.GetMetrics() {
		p := idx("spec.metrics", i)
		switch m.GetType() {
		case "Resource":
			if m.GetResource() == nil {
				errs = append(errs, Required(p+".resource", "must be populated for type Resource"))
				continue
			}
			if m.GetResource().GetName() == "" {
				errs = append(errs, Required(p+".resource.name", ""))
			}
			errs = append(errs, validateMetricTarget(m.GetResource().GetTarget(), p+".resource.target")...)
		case "ContainerResource":
			if m.GetContainerResource() == nil {
				errs = append(errs, Required(p+".containerResource", "must be populated for type ContainerResource"))
				continue
			}
			errs = append(errs, validateMetricTarget(m.GetContainerResource().GetTarget(), p+".containerResource.target")...)
		case "Pods":
			if m.GetPods() == nil {
				errs = append(errs, Required(p+".pods", "must be populated for type Pods"))
				continue
			}
			errs = append(errs, validateMetricTarget(m.GetPods().GetTarget(), p+".pods.target")...)
		case "Object":
			if m.GetObject() == nil {
				errs = append(errs, Required(p+".object", "must be populated for type Object"))
				continue
			}
			errs = append(errs, validateMetricTarget(m.GetObject().GetTarget(), p+".object.target")...)
		case "External":
			if m.GetExternal() == nil {
				errs = append(errs, Required(p+".external", "must be populated for type External"))
				continue
			}
			errs = append(errs, validateMetricTarget(m.GetExternal().GetTarget(), p+".external.target")...)
		default:
			errs = append(errs, NotSupported(p+".type", m.GetType(), []string{"Resource", "ContainerResource", "Pods", "Object", "External"}))
		}
	}
	for name, rules := range map[string]*apiv1.HPAScalingRules{"scaleUp": s.GetBehavior().GetScaleUp(), "scaleDown": s.GetBehavior().GetScaleDown()} {
		p := "spec.behavior." + name
		if rules == nil {
			continue
		}
		if w := rules.StabilizationWindowSeconds; w != nil && (*w < 0 || *w > 3600) {
			errs = append(errs, Invalid(p+".stabilizationWindowSeconds", *w, "must be 0-3600"))
		}
		if sp := rules.SelectPolicy; sp != nil {
			errs = append(errs, oneOf(p+".selectPolicy", *sp, "Max", "Min", "Disabled")...)
		}
		for i, pol := range rules.GetPolicies() {
			pp := idx(p+".policies", i)
			errs = append(errs, oneOf(pp+".type", pol.GetType(), "Pods", "Percent")...)
			if pol.GetValue() <= 0 {
				errs = append(errs, Invalid(pp+".value", pol.GetValue(), "must be greater than 0"))
			}
			if pol.GetPeriodSeconds() <= 0 || pol.GetPeriodSeconds() > 1800 {
				errs = append(errs, Invalid(pp+".periodSeconds", pol.GetPeriodSeconds(), "must be 1-1800"))
			}
		}
	}
	return errs
}

func validateMetricTarget(t *apiv1.MetricTarget, path string) FieldErrors {
	if t == nil {
		return FieldErrors{Required(path, "")}
	}
	var errs FieldErrors
	switch t.GetType() {
	case "Utilization":
		if t.AverageUtilization == nil {
			errs = append(errs, Required(path+".averageUtilization", "must be set when type is Utilization"))
		} else if *t.AverageUtilization <= 0 {
			errs = append(errs, Invalid(path+".averageUtilization", *t.AverageUtilization, "must be greater than 0"))
		}
	case "Value":
		if t.GetValue() == "" {
			errs = append(errs, Required(path+".value", "must be set when type is Value"))
		}
	case "AverageValue":
		if t.GetAverageValue() == "" {
			errs = append(errs, Required(path+".averageValue", "must be set when type is AverageValue"))
		}
	default:
		errs = append(errs, NotSupported(path+".type", t.GetType(), []string{"Utilization", "Value", "AverageValue"}))
	}
	for name, v := range map[string]string{"value": t.GetValue(), "averageValue": t.GetAverageValue()} {
		if strings.TrimSpace(v) != "" {
			errs = append(errs, validateQuantity(path+"."+name, v)...)
		}
	}
	return errs
}
