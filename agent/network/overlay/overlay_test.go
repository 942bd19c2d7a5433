package overlay_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/agent/network/overlay"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// roleEnv makes the test binary, re-executed inside a pod netns, act as the
// listener or dialer of the exchange (so no traffic comes from the root netns).
const roleEnv = "OVERLAY_TEST_ROLE"

const echoPort = "7777"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "listen":
		os.Exit(listen())
	case "dial":
		os.Exit(dial(os.Getenv("OVERLAY_TEST_TARGET")))
	}
	os.Exit(m.Run())
}

// listen answers each TCP connection and each UDP datagram with the source
// IP it saw.
func listen() int {
	tl, err := net.Listen("tcp4", ":"+echoPort)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ul, err := net.ListenPacket("udp4", ":"+echoPort)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := ul.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = ul.WriteTo([]byte(from.(*net.UDPAddr).IP.String()+"\n"), from)
		}
	}()
	for {
		c, err := tl.Accept()
		if err != nil {
			return 1
		}
		_, _ = fmt.Fprintln(c, c.RemoteAddr().(*net.TCPAddr).IP.String())
		_ = c.Close()
	}
}

// dial prints "tcp <ip seen>" and "udp <ip seen>", or fails after a few tries.
func dial(target string) int {
	addr := net.JoinHostPort(target, echoPort)
	var tcpSeen, udpSeen string
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) && (tcpSeen == "" || udpSeen == "") {
		if tcpSeen == "" {
			if c, err := net.DialTimeout("tcp4", addr, 500*time.Millisecond); err == nil {
				_ = c.SetDeadline(time.Now().Add(time.Second))
				tcpSeen, _ = bufio.NewReader(c).ReadString('\n')
				_ = c.Close()
			}
		}
		if udpSeen == "" {
			if c, err := net.Dial("udp4", addr); err == nil {
				_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
				_, _ = c.Write([]byte("hi"))
				buf := make([]byte, 64)
				if n, err := c.Read(buf); err == nil {
					udpSeen = string(buf[:n])
				}
				_ = c.Close()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("tcp %s\nudp %s\n", strings.TrimSpace(tcpSeen), strings.TrimSpace(udpSeen))
	if tcpSeen == "" || udpSeen == "" {
		return 1
	}
	return 0
}

func TestPeerFromNode(t *testing.T) {
	node := func(ip, cidr, mac string) *apiv1.Node {
		n := &apiv1.Node{Metadata: &apiv1.ObjectMeta{Name: "w1", Annotations: map[string]string{}},
			Spec: &apiv1.NodeSpec{PodCIDR: cidr}, Status: &apiv1.NodeStatus{}}
		if mac != "" {
			n.Metadata.Annotations[overlay.MACAnnotation] = mac
		}
		if ip != "" {
			n.Status.Addresses = []*apiv1.NodeAddress{{Type: "Hostname", Address: "w1"}, {Type: "InternalIP", Address: ip}}
		}
		return n
	}
	p, err := overlay.PeerFromNode(node("10.0.0.5", "10.244.3.0/24", "aa:bb:cc:dd:ee:ff"))
	if err != nil || !p.NodeIP.Equal(net.ParseIP("10.0.0.5")) || p.PodCIDR.String() != "10.244.3.0/24" || p.MAC.String() != "aa:bb:cc:dd:ee:ff" {
		t.Fatalf("PeerFromNode = %+v, %v", p, err)
	}
	for _, tc := range []struct {
		n    *apiv1.Node
		want error
	}{
		{node("", "10.244.3.0/24", "aa:bb:cc:dd:ee:ff"), overlay.ErrNotReady},
		{node("10.0.0.5", "", "aa:bb:cc:dd:ee:ff"), overlay.ErrNotReady},
		{node("10.0.0.5", "10.244.3.0/24", ""), overlay.ErrNotReady},
		{node("fe80::1", "10.244.3.0/24", "aa:bb:cc:dd:ee:ff"), overlay.ErrBadPeer},
		{node("10.0.0.5", "10.244.3.0/99", "aa:bb:cc:dd:ee:ff"), overlay.ErrBadPeer},
		{node("10.0.0.5", "10.244.3.0/24", "not-a-mac"), overlay.ErrBadPeer},
	} {
		if _, err := overlay.PeerFromNode(tc.n); !errors.Is(err, tc.want) {
			t.Errorf("PeerFromNode(%v) = %v, want %v", tc.n, err, tc.want)
		}
	}
}

// lab is the netns tree of the cross-host test: hosts a and b on one veth
// pair (the underlay, no route out), each with a bridge and one pod netns.
type lab struct {
	t      *testing.T
	prefix string
}

func (l *lab) ns(name string) string { return l.prefix + name }

func (l *lab) path(name string) string { return "/run/netns/" + l.ns(name) }

func (l *lab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// ip runs `ip -n <ns> args...`.
func (l *lab) ip(ns string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "-n", l.ns(ns)}, args...)...)
}

func (l *lab) sysctl(ns, kv string) {
	l.t.Helper()
	l.run("nsenter", "--net="+l.path(ns), "sysctl", "-qw", kv)
}

func requireRootAndVXLAN(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, vxlan devices)")
	}
	for _, bin := range []string{"ip", "nsenter", "sysctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s on PATH", bin)
		}
	}
	// Probe vxlan support in a throwaway netns of our own, on a thread that
	// dies with its goroutine (netns.New moves the calling thread).
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			errc <- fmt.Errorf("cannot create a network namespace: %w", err)
			return
		}
		defer ns.Close()
		errc <- netlink.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "probe"}, VxlanId: 1, Port: 8472})
	}()
	if err := <-errc; err != nil {
		t.Skipf("no vxlan support here: %v", err)
	}
}

func newLab(t *testing.T) *lab {
	l := &lab{t: t, prefix: fmt.Sprintf("ovl%d-", os.Getpid())}
	for _, n := range []string{"ha", "hb", "pa", "pb"} {
		l.run("ip", "netns", "add", l.ns(n))
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.ns(n)).Run() })
	}
	// Underlay: one veth pair between the two hosts, nothing else.
	l.ip("ha", "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", l.ns("hb"))
	for i, h := range []string{"ha", "hb"} {
		l.ip(h, "addr", "add", fmt.Sprintf("192.168.77.%d/24", i+1), "dev", "u0")
		l.ip(h, "link", "set", "u0", "up")
		l.ip(h, "link", "set", "lo", "up")
		l.sysctl(h, "net.ipv4.ip_forward=1")
		// Pod side: bridge with the range's gateway, one pod on it.
		pod := "p" + h[1:]
		l.ip(h, "link", "add", "br0", "type", "bridge")
		l.ip(h, "addr", "add", fmt.Sprintf("10.244.%d.1/24", i+1), "dev", "br0")
		l.ip(h, "link", "set", "br0", "up")
		l.ip(h, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", l.ns(pod))
		l.ip(h, "link", "set", "veth0", "master", "br0", "up")
		l.ip(pod, "addr", "add", fmt.Sprintf("10.244.%d.2/24", i+1), "dev", "eth0")
		l.ip(pod, "link", "set", "eth0", "up")
		l.ip(pod, "link", "set", "lo", "up")
		l.ip(pod, "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i+1))
	}
	return l
}

// exec runs the test binary in a pod netns with a role.
func (l *lab) exec(ctx context.Context, pod, role, target string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+l.path(pod), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, "OVERLAY_TEST_TARGET="+target)
	return cmd
}

func node(name, ip, cidr string, mac net.HardwareAddr) *apiv1.Node {
	return &apiv1.Node{
		Metadata: &apiv1.ObjectMeta{Name: name, Annotations: map[string]string{overlay.MACAnnotation: mac.String()}},
		Spec:     &apiv1.NodeSpec{PodCIDR: cidr},
		Status:   &apiv1.NodeStatus{Addresses: []*apiv1.NodeAddress{{Type: "InternalIP", Address: ip}}},
	}
}

// TestCrossHostPodToPod: pod A on host a reaches pod B on host b over the
// vxlan overlay programmed by this package from two Nodes; B sees A's own
// pod IP (no NAT) over TCP and UDP. Then node b goes away (and before that
// changes address) on a: its route, neighbour and FDB entries go with it.
func TestCrossHostPodToPod(t *testing.T) {
	requireRootAndVXLAN(t)
	l := newLab(t)

	mk := func(h, ip, cidr string) *overlay.Overlay {
		_, ipn, _ := net.ParseCIDR(cidr)
		o, err := overlay.New(overlay.Config{NodeIP: net.ParseIP(ip), PodCIDR: ipn, NetNSPath: l.path(h)})
		if err != nil {
			t.Fatalf("overlay on %s: %v", h, err)
		}
		t.Cleanup(o.Close)
		return o
	}
	oa := mk("ha", "192.168.77.1", "10.244.1.0/24")
	ob := mk("hb", "192.168.77.2", "10.244.2.0/24")
	nodeA := node("a", "192.168.77.1", "10.244.1.0/24", oa.MAC())
	nodeB := node("b", "192.168.77.2", "10.244.2.0/24", ob.MAC())
	// The Node informer's events, as the agent's handler gets them.
	ha, hb := oa.Handler("a"), ob.Handler("b")
	for _, n := range []*apiv1.Node{nodeA, nodeB} {
		ha.OnAdd(n)
		hb.OnAdd(n)
	}

	nla := netlinkAt(t, l.path("ha"))
	vx, err := nla.LinkByName(overlay.DefaultDevice)
	if err != nil {
		t.Fatal(err)
	}
	if mtu := vx.Attrs().MTU; mtu != 1500-overlay.Overhead {
		t.Errorf("vxlan MTU = %d, want %d", mtu, 1500-overlay.Overhead)
	}
	if v := vx.(*netlink.Vxlan); v.VxlanId != 1 || v.Port != 8472 || v.Learning {
		t.Errorf("vxlan device: vni %d port %d learning %v, want 1 8472 false", v.VxlanId, v.Port, v.Learning)
	}

	ctx, cancel := context.WithCancel(context.Background())
	listener := l.exec(ctx, "pb", "listen", "")
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = listener.Wait() })

	out, err := l.exec(context.Background(), "pa", "dial", "10.244.2.2").CombinedOutput()
	if err != nil {
		t.Fatalf("pod a → pod b: %v\n%s", err, out)
	}
	if want := "tcp 10.244.1.2\nudp 10.244.1.2\n"; string(out) != want {
		t.Fatalf("pod b saw %q, want pod a's own IP (no NAT): %q", out, want)
	}
	t.Logf("pod b saw pod a's own IP over TCP and UDP:\n%s", out)
	requireEntries(t, nla, vx, "192.168.77.2", ob.MAC(), true)
	if cur, err := nla.LinkByName(overlay.DefaultDevice); err != nil || cur.Attrs().Statistics.TxPackets == 0 {
		t.Fatalf("the exchange did not go through the vxlan device (err %v)", err)
	}

	// An agent restart while node b is deleted: the new Overlay takes over
	// the device (same MAC) and Prune drops b's entries, keeps none for a.
	oa.Close()
	oa2 := mk("ha", "192.168.77.1", "10.244.1.0/24")
	if oa2.MAC().String() != oa.MAC().String() {
		t.Errorf("MAC after takeover = %s, want %s (peers programmed it)", oa2.MAC(), oa.MAC())
	}
	if err := oa2.Prune(); err != nil {
		t.Fatal(err)
	}
	requireEntries(t, nla, vx, "192.168.77.2", ob.MAC(), false)
	oa, ha = oa2, oa2.Handler("a")
	ha.OnAdd(nodeB)
	requireEntries(t, nla, vx, "192.168.77.2", ob.MAC(), true)

	// Node b changes address: the old FDB entry goes, a new one comes.
	ha.OnUpdate(nodeB, node("b", "192.168.77.3", "10.244.2.0/24", ob.MAC()))
	if fdbHas(t, nla, vx, "192.168.77.2", ob.MAC()) {
		t.Fatal("FDB entry for node b's old address 192.168.77.2 is still there")
	}
	requireEntries(t, nla, vx, "192.168.77.3", ob.MAC(), true)

	// Node b goes away: everything for it is removed, and pod b is unreachable.
	ha.OnDelete(nodeB)
	requireEntries(t, nla, vx, "192.168.77.3", ob.MAC(), false)
	if got := oa.Peers(); len(got) != 0 {
		t.Errorf("peers after delete = %v, want none", got)
	}
	if out, err := l.exec(context.Background(), "pa", "dial", "10.244.2.2").CombinedOutput(); err == nil {
		t.Fatalf("pod b still reachable after node b was removed:\n%s", out)
	}
}

func netlinkAt(t *testing.T, path string) *netlink.Handle {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// requireEntries checks that the route to 10.244.2.0/24, the neighbour
// 10.244.2.0 → mac and the FDB entry mac → nodeIP are all there (want) or
// all gone.
func requireEntries(t *testing.T, h *netlink.Handle, vx netlink.Link, nodeIP string, mac net.HardwareAddr, want bool) {
	t.Helper()
	routes, err := h.RouteList(vx, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	route := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == "10.244.2.0/24" && r.Gw.Equal(net.ParseIP("10.244.2.0")) {
			route = true
		}
	}
	neighs, err := h.NeighList(vx.Attrs().Index, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	neigh := false
	for _, n := range neighs {
		if n.IP.Equal(net.ParseIP("10.244.2.0")) && bytes.Equal(n.HardwareAddr, mac) {
			neigh = true
		}
	}
	fdb := fdbHas(t, h, vx, nodeIP, mac)
	if route != want || neigh != want || fdb != want {
		t.Fatalf("entries for node b (%s, %s): route %v neighbour %v fdb %v, want all %v", nodeIP, mac, route, neigh, fdb, want)
	}
}

// fdbHas: the vxlan device's FDB maps mac to nodeIP.
func fdbHas(t *testing.T, h *netlink.Handle, vx netlink.Link, nodeIP string, mac net.HardwareAddr) bool {
	t.Helper()
	fdbs, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fdbs {
		if n.IP.Equal(net.ParseIP(nodeIP)) && bytes.Equal(n.HardwareAddr, mac) {
			return true
		}
	}
	return false
}
