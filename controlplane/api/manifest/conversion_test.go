package manifest

import (
	"testing"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// TestHPAv1ConvertsToV2: an autoscaling/v1 manifest decodes to the stored
// v2 object (targetCPUUtilizationPercentage becomes a cpu Utilization
// metric), validates, and an unknown field still names its line.
func TestHPAv1ConvertsToV2(t *testing.T) {
	dec := NewDecoder(kinds.NewRegistry())
	src := "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\n  minReplicas: 2\n  maxReplicas: 5\n  targetCPUUtilizationPercentage: 60\n"
	d, err := dec.DecodeOne("hpa.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate("hpa.yaml"); err != nil {
		t.Fatal(err)
	}
	h, ok := d.Object.(*apiv1.HorizontalPodAutoscaler)
	if !ok {
		t.Fatalf("decoded a %T, want the stored v2 HorizontalPodAutoscaler", d.Object)
	}
	if h.GetApiVersion() != "autoscaling/v2" || h.GetSpec().GetMinReplicas() != 2 || h.GetSpec().GetMaxReplicas() != 5 ||
		h.GetSpec().GetScaleTargetRef().GetName() != "web" {
		t.Fatalf("converted object: %v", h)
	}
	m := h.GetSpec().GetMetrics()
	if len(m) != 1 || m[0].GetResource().GetName() != "cpu" || m[0].GetResource().GetTarget().GetType() != "Utilization" ||
		m[0].GetResource().GetTarget().GetAverageUtilization() != 60 {
		t.Fatalf("metrics %v, want cpu Utilization 60", m)
	}
	_, err = dec.Decode("bad.yaml", []byte(src+"  metrics: []\n"))
	if err == nil || err.Error() != `bad.yaml:13: spec.metrics: unknown field "metrics"` {
		t.Fatalf("v2 field in a v1 manifest: %v", err)
	}
}
