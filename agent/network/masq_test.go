package network_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/skiffhq/skiff/agent/network"
)

func TestEnsureMasqueradeRejectsBadRanges(t *testing.T) {
	for _, tc := range []struct{ pod, cluster string }{
		{"10.245.1.0/24", "10.244.0.0/16"}, // outside
		{"10.0.0.0/8", "10.244.0.0/16"},    // wider than the cluster range
		{"fd00::/64", "fd00::/48"},         // IPv6
	} {
		err := network.EnsureMasquerade(netip.MustParsePrefix(tc.pod), netip.MustParsePrefix(tc.cluster), -1)
		if !errors.Is(err, network.ErrBadMasq) {
			t.Errorf("EnsureMasquerade(%s, %s) = %v, want ErrBadMasq", tc.pod, tc.cluster, err)
		}
	}
}

// inNetns runs fn on a thread in the network namespace at path (sockets fn
// creates stay in it).
func inNetns(t *testing.T, path string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// TestMasqueradeOnlyLeavingClusterRange: in a lab (host netns "h" routing
// between a pod, another node's pod range and an outside network, no route
// out of the lab), a pod's traffic to the cluster range keeps its own IP and
// its traffic to the outside is masqueraded to the host's address.
func TestMasqueradeOnlyLeavingClusterRange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	prefix := fmt.Sprintf("msq%d-", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip := func(ns string, args ...string) {
		t.Helper()
		run(append([]string{"ip", "-n", prefix + ns}, args...)...)
	}
	path := func(ns string) string { return "/run/netns/" + prefix + ns }
	for _, n := range []string{"h", "pod", "peer", "out"} {
		run("ip", "netns", "add", prefix+n)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", prefix+n).Run() })
		ip(n, "link", "set", "lo", "up")
	}
	run("nsenter", "--net="+path("h"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// h ↔ pod (this node's pod range), h ↔ peer (another node's pod range,
	// standing for the overlay), h ↔ out (outside the cluster range).
	for _, l := range []struct{ ns, hostIP, farIP, gw string }{
		{"pod", "10.244.1.1/24", "10.244.1.2/24", "10.244.1.1"},
		{"peer", "10.244.2.1/24", "10.244.2.2/24", "10.244.2.1"},
		{"out", "192.168.79.1/24", "192.168.79.2/24", ""},
	} {
		ip("h", "link", "add", "v-"+l.ns, "type", "veth", "peer", "name", "eth0", "netns", prefix+l.ns)
		ip("h", "addr", "add", l.hostIP, "dev", "v-"+l.ns)
		ip("h", "link", "set", "v-"+l.ns, "up")
		ip(l.ns, "addr", "add", l.farIP, "dev", "eth0")
		ip(l.ns, "link", "set", "eth0", "up")
		if l.gw != "" {
			ip(l.ns, "route", "add", "default", "via", l.gw)
		}
	}
	// The outside could answer pods directly: only the rule makes it see h.
	ip("out", "route", "add", "10.244.0.0/16", "via", "192.168.79.1")
	hns, err := netns.GetFromPath(path("h"))
	if err != nil {
		t.Fatal(err)
	}
	defer hns.Close()
	if err := network.EnsureMasquerade(netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.0.0/16"), int(hns)); err != nil {
		t.Fatal(err)
	}
	// Twice: replaces, does not fail or duplicate.
	if err := network.EnsureMasquerade(netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.0.0/16"), int(hns)); err != nil {
		t.Fatal(err)
	}

	seen := func(listenNS, addr string) string {
		t.Helper()
		var ln net.Listener
		if err := inNetns(t, path(listenNS), func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintln(c, c.RemoteAddr().(*net.TCPAddr).IP)
			_ = c.Close()
		}()
		var got string
		if err := inNetns(t, path("pod"), func() error {
			c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			got, err = bufio.NewReader(c).ReadString('\n')
			return err
		}); err != nil {
			t.Fatalf("pod → %s: %v", addr, err)
		}
		return strings.TrimSpace(got)
	}
	if got := seen("peer", "10.244.2.2:7001"); got != "10.244.1.2" {
		t.Errorf("a pod in the cluster range saw %s, want the pod's own IP 10.244.1.2 (no NAT)", got)
	}
	if got := seen("out", "192.168.79.2:7001"); got != "192.168.79.1" {
		t.Errorf("outside the cluster range saw %s, want the host's 192.168.79.1 (masqueraded)", got)
	}
	if err := network.RemoveMasquerade(int(hns)); err != nil {
		t.Fatal(err)
	}
	if got := seen("out", "192.168.79.2:7002"); got != "10.244.1.2" {
		t.Errorf("after RemoveMasquerade the outside saw %s, want 10.244.1.2", got)
	}
}
