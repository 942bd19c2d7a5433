package podcidr_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/podcidr"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// small is a cluster range of four /24s: exhaustion is near.
var small = clusternet.Config{ClusterCIDR: "10.244.0.0/22", NodeCIDRMaskSize: 24}

// start runs a control plane whose store holds net (as ctl init writes
// it) and whose podcidr loop allocates from it.
func start(t *testing.T, net clusternet.Config, hollow int) (*cptest.Cluster, *client.Client) {
	t.Helper()
	parsed, err := net.Parse()
	if err != nil {
		t.Fatal(err)
	}
	cfg := podcidr.Config{Kit: ctrlkit.Config{Resync: time.Second},
		Network: func(context.Context) (clusternet.Network, error) { return parsed, nil }}
	c := cptest.Start(t, cptest.Options{HollowNodes: hollow, Loops: []string{"podcidr"}, Configs: map[string]any{"podcidr": cfg}})
	storeNetwork(t, c, net)
	return c, c.Client(t)
}

func storeNetwork(t *testing.T, c *cptest.Cluster, net clusternet.Config) {
	t.Helper()
	l, err := c.API.Store.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Store().Put(context.Background(), &storepb.PutRequest{Key: []byte(clusternet.StoreKey), Value: b}); err != nil {
		t.Fatal(err)
	}
}

func createNode(t *testing.T, cl *client.Client, name, cidr string) error {
	t.Helper()
	n := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: name}, Spec: &apiv1.NodeSpec{PodCIDR: cidr}}
	if cidr != "" {
		n.Spec.PodCIDRs = []string{cidr}
	}
	_, err := client.Create(context.Background(), cl, n)
	return err
}

// ranges maps each Node to its podCIDR.
func ranges(t *testing.T, cl *client.Client) map[string]string {
	t.Helper()
	nodes, _, err := client.List[*apiv1.Node](context.Background(), cl, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range nodes {
		out[n.GetMetadata().GetName()] = n.GetSpec().GetPodCIDR()
	}
	return out
}

// distinct fails the test if two Nodes hold the same range.
func distinct(t *testing.T, rs map[string]string) {
	t.Helper()
	holder := map[string]string{}
	for node, cidr := range rs {
		if cidr == "" {
			continue
		}
		if other, dup := holder[cidr]; dup {
			t.Fatalf("pod range %s given twice: to %s and %s", cidr, other, node)
		}
		holder[cidr] = node
	}
}

func waitAssigned(t *testing.T, cl *client.Client, names ...string) map[string]string {
	t.Helper()
	var rs map[string]string
	testutil.WaitFor(t, 15*time.Second, fmt.Sprintf("pod ranges for %v", names), func() bool {
		rs = ranges(t, cl)
		for _, n := range names {
			if rs[n] == "" {
				return false
			}
		}
		return true
	})
	distinct(t, rs)
	return rs
}

func warned(cl *client.Client, node, reason string) (string, bool) {
	evs, _, err := client.List[*apiv1.Event](context.Background(), cl, client.ListOptions{Namespace: "default"})
	if err != nil {
		return "", false
	}
	for _, e := range evs {
		if e.GetInvolvedObject().GetName() == node && e.GetReason() == reason && e.GetType() == "Warning" {
			return e.GetMessage(), true
		}
	}
	return "", false
}

// The allocator's table, one cluster through every step: allocate, never
// twice, exhaustion, release on delete, a leader change (the new leader's
// allocator derives what is taken from the stored Nodes).
func TestAllocator(t *testing.T) {
	c, cl := start(t, small, -1)
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"allocate: each Node gets a range of the cluster range, lowest first", func(t *testing.T) {
			for _, n := range []string{"a", "b", "c"} {
				if err := createNode(t, cl, n, ""); err != nil {
					t.Fatal(err)
				}
			}
			rs := waitAssigned(t, cl, "a", "b", "c")
			got := map[string]bool{rs["a"]: true, rs["b"]: true, rs["c"]: true}
			for _, want := range []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"} {
				if !got[want] {
					t.Fatalf("ranges %v: want the three lowest /24s", rs)
				}
			}
		}},
		{"never twice: the last range goes to d, then none is left for e", func(t *testing.T) {
			for _, n := range []string{"d", "e"} {
				if err := createNode(t, cl, n, ""); err != nil {
					t.Fatal(err)
				}
			}
			rs := waitAssigned(t, cl, "d")
			if rs["d"] != "10.244.3.0/24" {
				t.Fatalf("d got %q, want the last free range 10.244.3.0/24", rs["d"])
			}
		}},
		{"exhaustion: a Warning Event on the Node says so", func(t *testing.T) {
			var msg string
			testutil.WaitFor(t, 10*time.Second, "CIDRNotAvailable event on e", func() bool {
				var ok bool
				msg, ok = warned(cl, "e", podcidr.ReasonCIDRNotAvailable)
				return ok
			})
			t.Logf("event: %s", msg)
			if !strings.Contains(msg, "10.244.0.0/22") {
				t.Fatalf("event %q does not name the cluster range", msg)
			}
			if rs := ranges(t, cl); rs["e"] != "" {
				t.Fatalf("e got %q from a full range", rs["e"])
			}
		}},
		{"release on delete: b's range goes to e", func(t *testing.T) {
			freed := ranges(t, cl)["b"]
			if _, _, err := cl.Delete(context.Background(), "Node", "", "b", client.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			rs := waitAssigned(t, cl, "e")
			if rs["e"] != freed {
				t.Fatalf("e got %q, want b's freed range %s", rs["e"], freed)
			}
		}},
		{"leader change: the new allocator re-derives from the stored Nodes", func(t *testing.T) {
			before := ranges(t, cl)
			old := c.StopLeader(t)
			t.Cleanup(func() { _ = c.StartControlNode(old) })
			if _, _, err := cl.Delete(context.Background(), "Node", "", "a", client.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := createNode(t, cl, "f", ""); err != nil {
				t.Fatal(err)
			}
			rs := waitAssigned(t, cl, "f")
			if rs["f"] != before["a"] {
				t.Fatalf("f got %q, want a's freed range %s (every other range is held)", rs["f"], before["a"])
			}
			for _, n := range []string{"c", "d", "e"} {
				if rs[n] != before[n] {
					t.Fatalf("%s's range changed across the leader change: %s -> %s", n, before[n], rs[n])
				}
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

// Two allocators at once — a deposed leader still finishing while the new
// one starts — both picking the lowest free range, so they collide on
// every Node: still no range is given twice (the API server's claims
// refuse the second).
func TestTwoAllocatorsRacing(t *testing.T) {
	net := clusternet.Config{ClusterCIDR: "10.244.0.0/20", NodeCIDRMaskSize: 24}
	c, cl := start(t, net, -1)
	parsed, _ := net.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	kit := ctrlkit.DefaultConfig(c.Client(t))
	second := podcidr.New(podcidr.Config{Kit: kit, Network: func(context.Context) (clusternet.Network, error) { return parsed, nil }}, nil)
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var names []string
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		names = append(names, fmt.Sprintf("r%02d", i))
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			if err := createNode(t, cl, name, ""); err != nil {
				t.Error(err)
			}
		}(names[i])
	}
	wg.Wait()
	rs := waitAssigned(t, cl, names...)
	if len(rs) != 16 {
		t.Fatalf("%d Nodes, want 16", len(rs))
	}
	// The store's claims say the same: one per range, held by its Node.
	l, err := c.API.Store.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := l.Store().Range(context.Background(), &storepb.RangeRequest{Key: []byte(clusternet.ClaimPrefix), Prefix: true})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]string{}
	for _, kv := range resp.Kvs {
		claims[strings.TrimPrefix(string(kv.Key), clusternet.ClaimPrefix)] = string(kv.Value)
	}
	for node, cidr := range rs {
		if claims[cidr] != node {
			t.Errorf("claim of %s held by %q, want %s", cidr, claims[cidr], node)
		}
	}
	if len(claims) != len(rs) {
		t.Errorf("%d claims for %d Nodes: %v", len(claims), len(rs), claims)
	}
}

// 100 hollow nodes register (as agents do, without a range) and each gets
// its own.
func TestHundredHollowNodesDistinctRanges(t *testing.T) {
	_, cl := start(t, clusternet.Default(), 100)
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("hollow-%d", i)
	}
	start := time.Now()
	rs := waitAssigned(t, cl, names...)
	t.Logf("100 hollow nodes got distinct ranges within %v of registering", time.Since(start).Round(time.Millisecond))
	for n, cidr := range rs {
		if !strings.HasPrefix(cidr, "10.244.") || !strings.HasSuffix(cidr, "/24") {
			t.Fatalf("%s got %q, want a /24 of 10.244.0.0/16", n, cidr)
		}
	}
}
