package kinds

import (
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func TestValidatePodDisruptionBudget(t *testing.T) {
	k, ok := NewRegistry().ForKind("PodDisruptionBudget")
	if !ok {
		t.Fatal("PodDisruptionBudget not registered")
	}
	s := func(v string) *string { return &v }
	sel := &apiv1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	for _, tc := range []struct {
		name string
		spec *apiv1.PodDisruptionBudgetSpec
		want string // "" valid, else a substring of the errors
	}{
		{"min count", &apiv1.PodDisruptionBudgetSpec{MinAvailable: s("2"), Selector: sel}, ""},
		{"max percent", &apiv1.PodDisruptionBudgetSpec{MaxUnavailable: s("25%"), Selector: sel}, ""},
		{"both", &apiv1.PodDisruptionBudgetSpec{MinAvailable: s("1"), MaxUnavailable: s("1"), Selector: sel}, "cannot be both set"},
		{"negative", &apiv1.PodDisruptionBudgetSpec{MinAvailable: s("-1"), Selector: sel}, "spec.minAvailable"},
		{"over 100%", &apiv1.PodDisruptionBudgetSpec{MaxUnavailable: s("150%"), Selector: sel}, "spec.maxUnavailable"},
		{"word", &apiv1.PodDisruptionBudgetSpec{MinAvailable: s("half"), Selector: sel}, "spec.minAvailable"},
		{"bad policy", &apiv1.PodDisruptionBudgetSpec{MinAvailable: s("1"), Selector: sel, UnhealthyPodEvictionPolicy: s("Never")}, "spec.unhealthyPodEvictionPolicy"},
		{"bad selector", &apiv1.PodDisruptionBudgetSpec{MinAvailable: s("1"), Selector: &apiv1.LabelSelector{MatchLabels: map[string]string{"bad key": "x"}}}, "spec.selector"},
	} {
		pdb := &apiv1.PodDisruptionBudget{Metadata: &apiv1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: tc.spec}
		k.Default(pdb)
		errs := k.Validate(pdb)
		switch {
		case tc.want == "" && len(errs) > 0:
			t.Errorf("%s: %v, want valid", tc.name, errs)
		case tc.want != "" && !strings.Contains(errs.Error(), tc.want):
			t.Errorf("%s: %v, want an error naming %q", tc.name, errs, tc.want)
		}
	}
}
