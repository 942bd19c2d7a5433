package proxytest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses of the lab. Backends are the "pods": ClusterCIDR covers them.
var (
	ClientIP       = netip.MustParseAddr("10.0.2.2")
	NodeClientSide = netip.MustParseAddr("10.0.2.1") // a node address
	ClusterCIDR    = netip.MustParsePrefix("10.1.0.0/16")
)

// BackendPort is where every backend serves TCP and UDP.
const BackendPort = 8080

// Backend is one endpoint namespace.
type Backend struct {
	Name   string
	NS     netns.NsHandle
	IP     netip.Addr
	NodeIP netip.Addr // node side of its link
}

// Lab is the namespace tree.
type Lab struct {
	Node, Client netns.NsHandle
	Backends     []*Backend
	listeners    []io.Closer
	wg           sync.WaitGroup
}

// NodeNSPath names the node namespace for netproxy.Config.NetNSPath.
func (l *Lab) NodeNSPath() string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(l.Node)) }

// InNS runs f on an OS thread inside ns; sockets f creates stay in ns.
func InNS(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

func newNS() (netns.NsHandle, error) {
	var h netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err = netns.New() // unshares this thread only
		if err != nil {
			errc <- fmt.Errorf("new netns: %w", err)
			return
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- nil
	}()
	return h, <-errc
}

func sysctl(ns netns.NsHandle, name, val string) error {
	return InNS(ns, func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(name, ".", "/"), []byte(val), 0o644)
	})
}

// NewLab creates the client, node and n backend namespaces and their links:
// client 10.0.2.2 -- 10.0.2.1 node 10.1.i.1 -- 10.1.i.2 backend i.
func NewLab(n int) (_ *Lab, err error) {
	l := &Lab{Node: netns.None(), Client: netns.None()}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.Node, err = newNS(); err != nil {
		return nil, err
	}
	if l.Client, err = newNS(); err != nil {
		return nil, err
	}
	nh, err := netlink.NewHandleAt(l.Node, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	if err := linkUp(nh, "lo"); err != nil {
		return nil, err
	}
	if err := l.link(nh, "cli", NodeClientSide, l.Client, ClientIP); err != nil {
		return nil, err
	}
	for i := 1; i <= n; i++ {
		b := &Backend{Name: fmt.Sprintf("be%d", i),
			IP: netip.AddrFrom4([4]byte{10, 1, byte(i), 2}), NodeIP: netip.AddrFrom4([4]byte{10, 1, byte(i), 1})}
		if b.NS, err = newNS(); err != nil {
			return nil, err
		}
		l.Backends = append(l.Backends, b)
		if err := l.link(nh, b.Name, b.NodeIP, b.NS, b.IP); err != nil {
			return nil, err
		}
	}
	if err := sysctl(l.Node, "net.ipv4.ip_forward", "1"); err != nil {
		return nil, fmt.Errorf("node ip_forward: %w", err)
	}
	return l, nil
}

func linkUp(h *netlink.Handle, name string) error {
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	return h.LinkSetUp(lk)
}

// link joins the node to peer with a veth (node side named name, peer side
// eth0), addresses /24, and a default route in peer via the node.
func (l *Lab) link(nh *netlink.Handle, name string, nodeIP netip.Addr, peer netns.NsHandle, peerIP netip.Addr) error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(peer))}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	if err := addAddr(nh, name, nodeIP); err != nil {
		return err
	}
	ph, err := netlink.NewHandleAt(peer, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer ph.Close()
	if err := linkUp(ph, "lo"); err != nil {
		return err
	}
	if err := addAddr(ph, "eth0", peerIP); err != nil {
		return err
	}
	eth, _ := ph.LinkByName("eth0")
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: nodeIP.AsSlice()}); err != nil {
		return fmt.Errorf("default route in %s peer: %w", name, err)
	}
	return nil
}

func addAddr(h *netlink.Handle, name string, ip netip.Addr) error {
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	a, _ := netlink.ParseAddr(ip.String() + "/24")
	if err := h.AddrAdd(lk, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", ip, name, err)
	}
	return h.LinkSetUp(lk)
}

// Close stops the servers and closes every namespace (the kernel then
// removes their links and nftables tables).
func (l *Lab) Close() {
	for _, c := range l.listeners {
		c.Close()
	}
	l.wg.Wait()
	for _, b := range l.Backends {
		b.NS.Close()
	}
	l.Client.Close()
	l.Node.Close()
}

// StartServers runs, in every backend, a TCP server that sends its name and
// a newline and then echoes lines, and a UDP server that answers any
// datagram with its name.
func (l *Lab) StartServers() error {
	for _, b := range l.Backends {
		var ln net.Listener
		var pc net.PacketConn
		err := InNS(b.NS, func() error {
			var err error
			if ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", BackendPort)); err != nil {
				return err
			}
			pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", BackendPort))
			return err
		})
		if err != nil {
			return fmt.Errorf("servers in %s: %w", b.Name, err)
		}
		l.listeners = append(l.listeners, ln, pc)
		name := b.Name
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go serveConn(c, name)
			}
		}()
		go func() {
			defer l.wg.Done()
			buf := make([]byte, 2048)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo([]byte(name), from)
			}
		}()
	}
	return nil
}

func serveConn(c net.Conn, name string) {
	defer c.Close()
	if _, err := io.WriteString(c, name+"\n"); err != nil {
		return
	}
	_, _ = io.Copy(c, c)
}

// Conn is a TCP connection to a lab server.
type Conn struct {
	net.Conn
	Backend string // who answered
	r       *bufio.Reader
}

// Echo sends a line and waits for it to come back.
func (c *Conn) Echo(line string) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != line {
		return fmt.Errorf("echo: sent %q, got %q", line, got)
	}
	return nil
}

// Dial opens a TCP connection from ns and reads the server's name.
func Dial(ns netns.NsHandle, addr string) (*Conn, error) {
	var c net.Conn
	if err := InNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read server name from %s: %w", addr, err)
	}
	return &Conn{Conn: c, Backend: strings.TrimSpace(name), r: r}, nil
}

// AskUDP sends one datagram from a fresh socket in ns and returns the answer.
func AskUDP(ns netns.NsHandle, addr string) (string, error) {
	var c net.Conn
	if err := InNS(ns, func() error {
		var err error
		c, err = net.Dial("udp4", addr)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("who")); err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Hits makes n fresh connections (or datagrams) to addr from ns and counts
// the answering backends; the first error ends the count.
func Hits(ns netns.NsHandle, proto, addr string, n int) (map[string]int, error) {
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		var name string
		var err error
		if proto == "udp" {
			name, err = AskUDP(ns, addr)
		} else {
			var c *Conn
			if c, err = Dial(ns, addr); err == nil {
				name = c.Backend
				c.Close()
			}
		}
		if err != nil {
			return counts, fmt.Errorf("%s %s (attempt %d): %w", proto, addr, i+1, err)
		}
		counts[name]++
	}
	return counts, nil
}

// ErrRefused matches a connection refused by ICMP port unreachable or RST.
var ErrRefused = errors.New("refused")

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }
