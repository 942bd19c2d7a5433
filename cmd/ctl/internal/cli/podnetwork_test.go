package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skiffhq/skiff/agent/network"
	"github.com/skiffhq/skiff/agent/network/overlay"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func TestPodNetworkModeErrors(t *testing.T) {
	if _, ok := podNetworkModes["flannel"]; ok {
		t.Fatal("unexpected mode")
	}
	if names := podNetworkModeNames(); names != "host-gw, none, vxlan" {
		t.Errorf("modes = %q", names)
	}
	err := configureVXLAN(podNetworkEnv{nodeIP: netip.MustParseAddr("127.0.0.1")}, &network.Config{})
	if err == nil || !strings.Contains(err.Error(), "--cluster-cidr") {
		t.Errorf("vxlan without --cluster-cidr: %v, want an error naming --cluster-cidr", err)
	}
	if err := configureHostGW(podNetworkEnv{}, &network.Config{}); err == nil || !strings.Contains(err.Error(), "cluster range") {
		t.Errorf("host-gw without the cluster range: %v, want an error naming it", err)
	}
	// ctl agent (no gossip to learn the range from) with the default mode
	// and no --cluster-cidr is refused before anything is set up.
	f := agentFlags{podNetwork: defaultPodNetwork, nodeName: "w1"}
	if err := runAgentWith(context.Background(), f, nil, nil, nil, slog.Default(), nil); err == nil || !strings.Contains(err.Error(), "--cluster-cidr") {
		t.Errorf("default --pod-network without a cluster range: %v, want an error naming --cluster-cidr", err)
	}
	// ctl join learns it: the agent waits for it and takes what gossip says.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	calls := 0
	got, err := learnClusterRange(ctx, func(context.Context) (string, error) {
		if calls++; calls < 3 {
			return "", nil
		}
		return "10.99.0.0/16", nil
	}, slog.Default())
	if err != nil || got != "10.99.0.0/16" {
		t.Errorf("learnClusterRange = %q, %v; want 10.99.0.0/16", got, err)
	}
}

// TestVXLANPodNetworkSetsUpOverlay: what `ctl agent --pod-network vxlan`
// does once the node has its range, in a lab netns (no route out) against a
// real API: pod MTU = underlay − 50 and no bridge-plugin masquerade, the
// vxlan device and the masquerade table exist, the node's MAC is published
// on its Node, and a peer Node with address, range and MAC gets its route.
func TestVXLANPodNetworkSetsUpOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, vxlan, nftables)")
	}
	ns := fmt.Sprintf("vxw%d", os.Getpid())
	for _, n := range []string{ns, ns + "b"} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
	}
	for _, args := range [][]string{
		{"-n", ns, "link", "add", "u0", "mtu", "1400", "type", "veth", "peer", "name", "u0", "netns", ns + "b"},
		{"-n", ns, "addr", "add", "192.168.81.1/24", "dev", "u0"},
		{"-n", ns, "link", "set", "u0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	cp := apitest.Start(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cp.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	admin := cp.MustClient(t)
	if _, err := client.Create(ctx, admin, &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w1"}, Spec: &apiv1.NodeSpec{PodCIDR: "10.244.1.0/24"}}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	env := podNetworkEnv{ctx: runCtx, nodeName: "w1", nodeIP: netip.MustParseAddr("192.168.81.1"), clusterCIDR: "10.244.0.0/16",
		client: admin, log: slog.Default()}

	var cfg network.Config
	cfg.IPMasq = true
	errc := make(chan error, 1)
	go func() { // on a thread in the lab netns: everything made here lives there
		runtime.LockOSThread()
		h, err := netns.GetFromPath("/run/netns/" + ns)
		if err == nil {
			defer h.Close()
			err = netns.Set(h)
		}
		if err == nil {
			err = configureVXLAN(env, &cfg)
		}
		if err == nil {
			err = (&vxlanPodNetwork{env: env}).start("10.244.1.0/24")
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if cfg.IPMasq || cfg.MTU != 1400-overlay.Overhead {
		t.Errorf("CNI config: ipMasq %v MTU %d, want false %d", cfg.IPMasq, cfg.MTU, 1400-overlay.Overhead)
	}
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
	vx, err := nl.LinkByName(overlay.DefaultDevice)
	if err != nil {
		t.Fatalf("vxlan device in the lab netns: %v", err)
	}
	nft, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nft.ListTableOfFamily(network.MasqTable, nftables.TableFamilyIPv4); err != nil {
		t.Errorf("masquerade table: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "w1's VTEP MAC on its Node", func() bool {
		n, err := client.Get[*apiv1.Node](ctx, admin, "", "w1")
		return err == nil && n.GetMetadata().GetAnnotations()[overlay.MACAnnotation] == vx.Attrs().HardwareAddr.String()
	})
	peer := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w2", Annotations: map[string]string{overlay.MACAnnotation: "02:00:00:00:00:02"}},
		Spec:   &apiv1.NodeSpec{PodCIDR: "10.244.2.0/24"},
		Status: &apiv1.NodeStatus{Addresses: []*apiv1.NodeAddress{{Type: "InternalIP", Address: "192.168.81.2"}}}}
	created, err := client.Create(ctx, admin, peer)
	if err != nil {
		t.Fatal(err)
	}
	if created.GetStatus().GetAddresses() == nil { // Create may drop status
		if _, err := client.UpdateStatus(ctx, admin, peer); err != nil {
			t.Fatal(err)
		}
	}
	hasRoute := func() bool {
		rs, err := nl.RouteList(vx, netlink.FAMILY_V4)
		if err != nil {
			return false
		}
		for _, r := range rs {
			if r.Dst != nil && r.Dst.String() == "10.244.2.0/24" {
				return true
			}
		}
		return false
	}
	testutil.WaitFor(t, 10*time.Second, "the route to w2's pod range", hasRoute)
	if _, _, err := admin.Delete(ctx, "Node", "", "w2", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the route to w2's pod range gone", func() bool { return !hasRoute() })
}
