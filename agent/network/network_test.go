package network_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skiffhq/skiff/agent/network"
	"github.com/skiffhq/skiff/agent/runtime/runtimetest"
)

// TestMain runs the tests inside a private network namespace (see runtimetest).
func TestMain(m *testing.M) { runtimetest.Main(m) }

func testConfig(t *testing.T) network.Config {
	dir := t.TempDir()
	c := network.DefaultConfig()
	c.ConfDir = filepath.Join(dir, "net.d")
	c.CacheDir = filepath.Join(dir, "cache")
	c.IPAMDataDir = filepath.Join(dir, "ipam")
	c.NetnsDir = filepath.Join(dir, "netns")
	c.PodCIDR = "10.250.1.0/24"
	c.BridgeName = "sknettest0"
	c.NetworkName = "sknettest"
	return c
}

// The built-in network waits for its range: pods cannot be set up before
// SetPodCIDR; the range is recorded in the data dir, so a restarted agent
// has it at once, and a different one later is refused.
func TestBuiltinWaitsForPodCIDR(t *testing.T) {
	c := testConfig(t)
	c.PodCIDR = ""
	m, err := network.New(c)
	if err != nil {
		t.Fatal(err)
	}
	if m.PodCIDR() != "" {
		t.Fatalf("range %q before any was set", m.PodCIDR())
	}
	if _, err := m.Setup(context.Background(), "early", filepath.Join(c.NetnsDir, "early"), nil); !errors.Is(err, network.ErrNoPodCIDR) {
		t.Fatalf("Setup without a range: %v, want ErrNoPodCIDR", err)
	}
	if err := m.Teardown(context.Background(), "early", "", nil); err != nil {
		t.Fatalf("Teardown without a range (nothing was ever set up): %v", err)
	}
	if err := m.SetPodCIDR("10.250.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetPodCIDR("10.250.1.0/24"); err != nil {
		t.Fatalf("the same range again: %v", err)
	}
	if err := m.SetPodCIDR("10.250.2.0/24"); !errors.Is(err, network.ErrPodCIDRChanged) {
		t.Fatalf("another range: %v, want ErrPodCIDRChanged", err)
	}
	again, err := network.New(c)
	if err != nil {
		t.Fatal(err)
	}
	if again.PodCIDR() != "10.250.1.0/24" {
		t.Fatalf("restarted manager's range %q, want the recorded 10.250.1.0/24", again.PodCIDR())
	}
	c.PodCIDR = "10.1.2.3"
	c.IPAMDataDir = filepath.Join(t.TempDir(), "ipam")
	if _, err := network.New(c); err == nil {
		t.Fatal("bad CIDR accepted")
	}
}

func TestUserConflistReplacesBuiltin(t *testing.T) {
	c := testConfig(t)
	if err := os.MkdirAll(c.ConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := `{"cniVersion":"1.0.0","name":"userwire","plugins":[{"type":"ptp","ipam":{"type":"host-local","subnet":"10.251.0.0/24"}}]}`
	if err := os.WriteFile(filepath.Join(c.ConfDir, "10-user.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/usr/lib/cni/ptp"); err != nil {
		t.Skip("CNI plugins missing: run make deps")
	}
	m, err := network.New(c)
	if err != nil {
		t.Fatal(err)
	}
	if m.NetworkName() != "userwire" {
		t.Fatalf("network %q, want the user's", m.NetworkName())
	}
	bad := `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"no-such-plugin"}]}`
	if err := os.WriteFile(filepath.Join(c.ConfDir, "00-bad.conflist"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := network.New(c); err == nil {
		t.Fatal("missing plugin not reported")
	}
}

// Setup gives the namespace lo + eth0 with an address from the pod CIDR
// and a hostPort mapping; Teardown releases the address.
func TestSetupTeardown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root; CI runs as root")
	}
	c := testConfig(t)
	c.IPMasq = false
	m, err := network.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(c.BridgeName); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	ns, err := m.CreateNetns("pod1")
	if err != nil {
		t.Fatal(err)
	}
	requireLoopbackUp(t, ns)
	ctx := context.Background()
	ports := []network.PortMapping{{HostPort: 18080, ContainerPort: 80, Protocol: "TCP"}}
	att, err := m.Setup(ctx, "pod1", ns, ports)
	if err != nil {
		t.Fatal(err)
	}
	if att.IP == nil || att.IP.To4()[0] != 10 || att.IP.To4()[1] != 250 {
		t.Fatalf("attachment %+v", att)
	}
	if ips, _ := m.Allocations(); len(ips) != 1 || ips[0] != att.IP.String() {
		t.Fatalf("allocations %v", ips)
	}
	if ids, _ := m.ListNetns(); len(ids) != 1 || ids[0] != "pod1" {
		t.Fatalf("netns list %v", ids)
	}
	if err := m.Teardown(ctx, "pod1", ns, ports); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteNetns("pod1"); err != nil {
		t.Fatal(err)
	}
	if ips, _ := m.Allocations(); len(ips) != 0 {
		t.Fatalf("address not released: %v", ips)
	}
	if _, err := os.Stat(ns); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("netns file left: %v", err)
	}

	// Without host ports (the built-in list then skips portmap).
	ns2, err := m.CreateNetns("pod2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.DeleteNetns("pod2") })
	att2, err := m.Setup(ctx, "pod2", ns2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ips, _ := m.Allocations(); len(ips) != 1 || ips[0] != att2.IP.String() {
		t.Fatalf("allocations %v, want [%s]", ips, att2.IP)
	}
	if err := m.Teardown(ctx, "pod2", ns2, nil); err != nil {
		t.Fatal(err)
	}
	if ips, _ := m.Allocations(); len(ips) != 0 {
		t.Fatalf("address not released: %v", ips)
	}
}

// requireLoopbackUp checks that lo in the pinned namespace at path is up
// and has 127.0.0.1.
func requireLoopbackUp(t *testing.T, path string) {
	t.Helper()
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("lo is down in %s", path)
	}
	addrs, err := nl.AddrList(lo, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) == 0 || !addrs[0].IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("lo addresses %v, want 127.0.0.1", addrs)
	}
}
