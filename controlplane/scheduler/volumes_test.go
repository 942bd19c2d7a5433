package scheduler

import (
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func TestVolumeFitsNode(t *testing.T) {
	node := func(name string) *apiv1.Node {
		return &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name, "zone": "a"}}}
	}
	pv := func(na *apiv1.VolumeNodeAffinity) *apiv1.PersistentVolume {
		return &apiv1.PersistentVolume{Spec: &apiv1.PersistentVolumeSpec{NodeAffinity: na}}
	}
	on := func(reqs ...*apiv1.NodeSelectorRequirement) *apiv1.VolumeNodeAffinity {
		return &apiv1.VolumeNodeAffinity{Required: &apiv1.NodeSelector{NodeSelectorTerms: []*apiv1.NodeSelectorTerm{{MatchExpressions: reqs}}}}
	}
	host := func(h string) *apiv1.NodeSelectorRequirement {
		return &apiv1.NodeSelectorRequirement{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{h}}
	}
	for _, tc := range []struct {
		name string
		pv   *apiv1.PersistentVolume
		node string
		want bool
	}{
		{"no affinity: anywhere", pv(nil), "n1", true},
		{"its node", pv(on(host("n1"))), "n1", true},
		{"another node", pv(on(host("n1"))), "n2", false},
		{"zone", pv(on(&apiv1.NodeSelectorRequirement{Key: "zone", Operator: "In", Values: []string{"a"}})), "n2", true},
		{"empty required selector matches nothing", pv(&apiv1.VolumeNodeAffinity{Required: &apiv1.NodeSelector{}}), "n1", false},
	} {
		if got := VolumeFitsNode(tc.pv, node(tc.node)); got != tc.want {
			t.Errorf("%s: VolumeFitsNode = %v, want %v", tc.name, got, tc.want)
		}
	}
}
