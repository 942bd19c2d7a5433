package overlay

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// TestHostGWRoutesFollowNodes: in a lab netns (no route out), a peer Node
// gets a route to its pod range via its node IP; when it changes address
// the route moves (nothing is left via the old one); a peer off the local
// subnet is refused naming host-gw's one-L2 need; a deleted Node's route goes.
func TestHostGWRoutesFollowNodes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	ns := fmt.Sprintf("hgw%d", os.Getpid())
	for _, n := range []string{ns, ns + "b"} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
	}
	for _, args := range [][]string{
		{"-n", ns, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", ns + "b"},
		{"-n", ns, "addr", "add", "192.168.82.1/24", "dev", "u0"},
		{"-n", ns, "link", "set", "u0", "up"},
		{"-n", ns + "b", "link", "set", "u0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	g, err := NewHostGW("/run/netns/"+ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h, err := netns.GetFromPath("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	routeTo := func(dst string) []string {
		routes, err := nl.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		var via []string
		for _, r := range routes {
			if r.Dst != nil && r.Dst.String() == dst {
				via = append(via, r.Gw.String())
			}
		}
		return via
	}
	node := func(name, ip, cidr string) *apiv1.Node {
		return &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: name}, Spec: &apiv1.NodeSpec{PodCIDR: cidr},
			Status: &apiv1.NodeStatus{Addresses: []*apiv1.NodeAddress{{Type: "InternalIP", Address: ip}}}}
	}
	hd := g.Handler("a")
	hd.OnAdd(node("a", "192.168.82.1", "10.244.1.0/24")) // self: no route
	b := node("b", "192.168.82.2", "10.244.2.0/24")
	hd.OnAdd(b)
	if via := routeTo("10.244.2.0/24"); len(via) != 1 || via[0] != "192.168.82.2" {
		t.Fatalf("route to b's pods via %v, want [192.168.82.2]", via)
	}
	if via := routeTo("10.244.1.0/24"); len(via) != 0 {
		t.Errorf("a route to this node's own range via %v", via)
	}
	b2 := node("b", "192.168.82.3", "10.244.2.0/24")
	hd.OnUpdate(b, b2)
	if via := routeTo("10.244.2.0/24"); len(via) != 1 || via[0] != "192.168.82.3" {
		t.Fatalf("after b moved: route via %v, want [192.168.82.3] only", via)
	}
	r, err := routeFromNode(node("c", "10.9.9.9", "10.244.3.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetRoute("c", r); err == nil || !strings.Contains(err.Error(), "one L2 network") {
		t.Errorf("peer off the local subnet: %v, want an error naming host-gw's one-L2 need", err)
	}
	hd.OnDelete(b2)
	if via := routeTo("10.244.2.0/24"); len(via) != 0 {
		t.Errorf("after b was deleted: route via %v, want none", via)
	}
	if got := g.Routes(); len(got) != 0 {
		t.Errorf("programmed routes %v, want none", got)
	}
}
