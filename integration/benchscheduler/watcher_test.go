package main

import (
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func TestPodNameAndNodeReadTheRightFields(t *testing.T) {
	pod := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: "web-1", Namespace: "bench", Labels: map[string]string{"a": "b"}},
		Spec:   &apiv1.PodSpec{NodeName: "hollow-00001", SchedulerName: "default-scheduler", Containers: []*apiv1.Container{{Name: "c"}}},
		Status: &apiv1.PodStatus{Phase: "Pending"}}
	b, err := proto.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	// As a watch sends it: a second metadata with the resourceVersion.
	more, _ := proto.Marshal(&apiv1.Pod{Metadata: &apiv1.ObjectMeta{ResourceVersion: "9"}})
	name, node, err := podNameAndNode(append(b, more...))
	if err != nil || name != "web-1" || node != "hollow-00001" {
		t.Fatalf("got %q %q %v", name, node, err)
	}
	pod.Spec.NodeName = ""
	b, _ = proto.Marshal(pod)
	if _, node, _ := podNameAndNode(b); node != "" {
		t.Fatalf("unbound pod read as on %q", node)
	}
	if _, _, err := podNameAndNode([]byte{0x1a, 0x05}); err == nil {
		t.Fatal("truncated pod read without error")
	}
}
