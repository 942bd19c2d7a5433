package scheduler

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// benchPlace places b.N pods (owned by Deployments of 50 replicas, as the
// scheduler benchmark's workload) on 5,000 nodes, a tenth of them
// tainted, counting each on its node as the loop's assume step does.
func benchPlace(b *testing.B, mut func(i int, p *apiv1.Pod)) {
	var nodes []*NodeInfo
	for i := 0; i < 5000; i++ {
		n := node(fmt.Sprintf("n%d", i), "64", "256Gi", func(n *apiv1.Node) {
			n.Status.Allocatable["pods"] = "1000000"
			if i%10 == 0 {
				n.Spec.Taints = []*apiv1.Taint{{Key: "dedicated", Value: "db", Effect: "NoSchedule"}}
			}
		})
		ni, err := NewNodeInfo(n)
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, ni)
	}
	pods := make([]*PodInfo, 2000)
	for i := range pods {
		p := pod(fmt.Sprintf("p%d", i), "10m", "16Mi")
		p.Metadata.OwnerReferences = []*apiv1.OwnerReference{{Kind: "ReplicaSet", Name: fmt.Sprintf("rs%d", i/50), Uid: "u", Controller: proto.Bool(true)}}
		if mut != nil {
			mut(i, p)
		}
		pi, err := NewPodInfo(p)
		if err != nil {
			b.Fatal(err)
		}
		pods[i] = pi
	}
	a := NewAlgorithm(1)
	want := NodesToScore(len(nodes), 0)
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pi := pods[i%len(pods)]
		if i%len(pods) == 0 && i > 0 {
			b.StopTimer()
			for _, n := range nodes {
				for k := range n.pods {
					n.RemovePod(n.pods[k].Pod)
				}
			}
			b.StartTimer()
		}
		n, nx, err := a.PlaceSampled(pi, nodes, next, want)
		if err != nil {
			b.Fatal(err)
		}
		next = nx
		n.AddPod(pi)
	}
}

func BenchmarkPlacePlainOwnedPods(b *testing.B) { benchPlace(b, nil) }

// A tenth of the pods carry a node selector and a toleration: the filters
// they concern run for them, and only for them.
func BenchmarkPlaceMixedPods(b *testing.B) {
	benchPlace(b, func(i int, p *apiv1.Pod) {
		if i%10 == 0 {
			p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": fmt.Sprintf("n%d", i%5000)}
			p.Spec.Tolerations = []*apiv1.Toleration{{Key: "dedicated", Operator: "Exists"}}
		}
	})
}
