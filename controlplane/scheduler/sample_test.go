package scheduler

import (
	"errors"
	"fmt"
	"testing"
)

func TestNodesToScore(t *testing.T) {
	cases := []struct{ total, pct, want int }{
		{3, 0, 3}, {99, 0, 99}, {100, 0, 100}, {500, 0, 230}, {1000, 0, 420}, {5000, 0, 500}, {10000, 0, 500},
		{5000, 100, 5000}, {5000, 1, 100}, {200, 0, 100},
	}
	for _, c := range cases {
		if got := NodesToScore(c.total, c.pct); got != c.want {
			t.Errorf("NodesToScore(%d, %d) = %d, want %d", c.total, c.pct, got, c.want)
		}
	}
}

// Sampled placement rotates its start, counts every node when nothing
// fits, and spreads an owner's pods like full placement does.
func TestPlaceSampled(t *testing.T) {
	alg := NewAlgorithm(5)
	var nodes []*NodeInfo
	for i := 0; i < 300; i++ {
		cpu := "4"
		if i%3 == 0 {
			cpu = "1"
		}
		nodes = append(nodes, infos(t, node(fmt.Sprintf("n%03d", i), cpu, "8Gi"))...)
	}
	want := NodesToScore(len(nodes), 0)
	start := 0
	used := map[string]int{}
	for i := 0; i < 400; i++ {
		p := pinfo(t, pod(fmt.Sprintf("p%d", i), "2", "64Mi"))
		n, next, err := alg.PlaceSampled(p, nodes, start, want)
		if err != nil {
			t.Fatal(err)
		}
		if n.Allocatable.MilliCPU < 2000 {
			t.Fatalf("placed on a node without room: %s", n.Name())
		}
		if i == 0 && next == start {
			t.Fatalf("start index did not move")
		}
		start = next
		n.AddPod(p)
		used[n.Name()]++
	}
	// 200 nodes with 4 cpu take exactly 2 pods of 2 cpu each.
	if len(used) != 200 {
		t.Fatalf("400 pods used %d nodes, want all 200 that fit", len(used))
	}
	_, _, err := alg.PlaceSampled(pinfo(t, pod("x", "2", "64Mi")), nodes, start, want)
	var fe *FitError
	if !errors.As(err, &fe) || fe.Error() != "0/300 nodes are available: 300 Insufficient cpu." {
		t.Fatalf("full cluster: %v", err)
	}
}

// Owner counts stay exact whatever the mask says: owners sharing a mask
// bit, removal down to zero, and an owner never added.
func TestOwnerCountsWithSharedMaskBits(t *testing.T) {
	ni := &NodeInfo{}
	a, b, c := uint64(5), uint64(5+64), uint64(6) // a and b share bit 5
	ni.addOwner(a, 1)
	ni.addOwner(b, 2)
	ni.addOwner(a, 1)
	if ni.ownerPods(a) != 2 || ni.ownerPods(b) != 2 || ni.ownerPods(c) != 0 {
		t.Fatalf("counts a=%d b=%d c=%d, want 2 2 0", ni.ownerPods(a), ni.ownerPods(b), ni.ownerPods(c))
	}
	ni.addOwner(a, -2)
	if ni.ownerPods(a) != 0 || ni.ownerPods(b) != 2 {
		t.Fatalf("after removing a: a=%d b=%d, want 0 2", ni.ownerPods(a), ni.ownerPods(b))
	}
	ni.addOwner(b, -2)
	ni.addOwner(c, 1)
	if ni.ownerPods(b) != 0 || ni.ownerPods(c) != 1 || ni.ownerMask != ownerBit(c) {
		t.Fatalf("after removing b: b=%d c=%d mask=%b", ni.ownerPods(b), ni.ownerPods(c), ni.ownerMask)
	}
}
