package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// MACAnnotation is the Node annotation holding the node's VTEP MAC; each agent
// writes it on its own Node so that peers can program their FDB and neighbour
// entries.
const MACAnnotation = "skiff.io/vxlan-mac"

const (
	// DefaultDevice is the vxlan device's name.
	DefaultDevice = "skiff.1"
	// DefaultVNI and DefaultPort match flannel's vxlan backend on Linux.
	DefaultVNI  = 1
	DefaultPort = 8472
	// Overhead is what VXLAN over IPv4 adds to each packet (outer IP 20 +
	// UDP 8 + VXLAN 8 + inner Ethernet 14).
	Overhead = 50
)

// Sentinel errors.
var (
	ErrBadConfig = errors.New("overlay: bad config")
	ErrBadPeer   = errors.New("overlay: node cannot be a peer")
	// ErrNotReady: the node lacks what a peer needs (address, range or MAC) yet.
	ErrNotReady = errors.New("overlay: node not ready as a peer")
)

// Config is one node's side of the overlay.
type Config struct {
	// NodeIP is this node's underlay address (IPv4); its link's MTU sizes the
	// vxlan device.
	NodeIP net.IP
	// PodCIDR is this node's pod range; its network address is the vxlan
	// device's address.
	PodCIDR *net.IPNet
	// Device, VNI and Port default to DefaultDevice, DefaultVNI, DefaultPort.
	Device string
	VNI    int
	Port   int
	// NetNSPath, if set, is the network namespace to program (tests); else the
	// caller's.
	NetNSPath string
	Log       *slog.Logger
}

// Peer is what this node programs for another node.
type Peer struct {
	Name    string
	NodeIP  net.IP
	PodCIDR *net.IPNet
	MAC     net.HardwareAddr
}

func (p Peer) equal(o Peer) bool {
	return p.Name == o.Name && p.NodeIP.Equal(o.NodeIP) && p.PodCIDR.String() == o.PodCIDR.String() &&
		p.MAC.String() == o.MAC.String()
}

// gateway is the peer's overlay address: its range's network address.
func (p Peer) gateway() net.IP { return p.PodCIDR.IP.Mask(p.PodCIDR.Mask).To4() }

// Overlay is one node's vxlan device and the entries it keeps for its peers.
type Overlay struct {
	cfg  Config
	log  *slog.Logger
	h    *netlink.Handle
	link netlink.Link

	mu    sync.Mutex
	peers map[string]Peer // by node name: what is programmed

	closeOnce sync.Once
}

// New creates (or takes over) the vxlan device, gives it the network address
// of cfg.PodCIDR and brings it up.
func New(cfg Config) (*Overlay, error) {
	if cfg.Device == "" {
		cfg.Device = DefaultDevice
	}
	if cfg.VNI == 0 {
		cfg.VNI = DefaultVNI
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.NodeIP.To4() == nil {
		return nil, fmt.Errorf("%w: NodeIP %q is not an IPv4 address", ErrBadConfig, cfg.NodeIP)
	}
	if cfg.PodCIDR == nil || cfg.PodCIDR.IP.To4() == nil {
		return nil, fmt.Errorf("%w: PodCIDR %v is not an IPv4 range", ErrBadConfig, cfg.PodCIDR)
	}
	h, err := handle(cfg.NetNSPath)
	if err != nil {
		return nil, err
	}
	o := &Overlay{cfg: cfg, log: cfg.Log.With("component", "overlay", "device", cfg.Device), h: h, peers: map[string]Peer{}}
	if err := o.setupDevice(); err != nil {
		h.Close()
		return nil, err
	}
	return o, nil
}

func handle(path string) (*netlink.Handle, error) {
	if path == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("overlay: netlink: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("overlay: network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("overlay: netlink in %s: %w", path, err)
	}
	return h, nil
}

// underlay is the link holding NodeIP.
func (o *Overlay) underlay() (netlink.Link, error) {
	addrs, err := o.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("overlay: list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IP.Equal(o.cfg.NodeIP) {
			l, err := o.h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("overlay: link of %s: %w", o.cfg.NodeIP, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: no link has NodeIP %s", ErrBadConfig, o.cfg.NodeIP)
}

func (o *Overlay) setupDevice() error {
	under, err := o.underlay()
	if err != nil {
		return err
	}
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: o.cfg.Device, MTU: under.Attrs().MTU - Overhead},
		VxlanId:      o.cfg.VNI,
		VtepDevIndex: under.Attrs().Index,
		SrcAddr:      o.cfg.NodeIP.To4(),
		Port:         o.cfg.Port,
		Learning:     false,
	}
	if cur, err := o.h.LinkByName(o.cfg.Device); err == nil {
		v, ok := cur.(*netlink.Vxlan)
		if ok && v.VxlanId == want.VxlanId && v.Port == want.Port && v.SrcAddr.Equal(want.SrcAddr) &&
			v.VtepDevIndex == want.VtepDevIndex && !v.Learning {
			want = v // keep it: its MAC is what peers have programmed
		} else {
			o.log.Info("replacing vxlan device with other settings")
			if err := o.h.LinkDel(cur); err != nil {
				return fmt.Errorf("overlay: delete old %s: %w", o.cfg.Device, err)
			}
		}
	}
	if want.Attrs().Index == 0 {
		if err := o.h.LinkAdd(want); err != nil {
			return fmt.Errorf("overlay: create %s (vni %d port %d): %w", o.cfg.Device, o.cfg.VNI, o.cfg.Port, err)
		}
	}
	link, err := o.h.LinkByName(o.cfg.Device)
	if err != nil {
		return fmt.Errorf("overlay: %s: %w", o.cfg.Device, err)
	}
	if mtu := under.Attrs().MTU - Overhead; link.Attrs().MTU != mtu {
		if err := o.h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("overlay: set MTU %d on %s: %w", mtu, o.cfg.Device, err)
		}
	}
	gw := &net.IPNet{IP: o.cfg.PodCIDR.IP.Mask(o.cfg.PodCIDR.Mask).To4(), Mask: net.CIDRMask(32, 32)}
	addrs, err := o.h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("overlay: addresses of %s: %w", o.cfg.Device, err)
	}
	for _, a := range addrs {
		if !a.IP.Equal(gw.IP) {
			if err := o.h.AddrDel(link, &a); err != nil {
				return fmt.Errorf("overlay: remove stale address %s: %w", a.IPNet, err)
			}
		}
	}
	if err := o.h.AddrReplace(link, &netlink.Addr{IPNet: gw}); err != nil {
		return fmt.Errorf("overlay: address %s on %s: %w", gw, o.cfg.Device, err)
	}
	if err := o.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("overlay: up %s: %w", o.cfg.Device, err)
	}
	o.link, err = o.h.LinkByName(o.cfg.Device)
	if err != nil {
		return fmt.Errorf("overlay: %s: %w", o.cfg.Device, err)
	}
	return nil
}

// MAC is this node's VTEP MAC (to publish as MACAnnotation).
func (o *Overlay) MAC() net.HardwareAddr { return o.link.Attrs().HardwareAddr }

// Device is the vxlan device's name.
func (o *Overlay) Device() string { return o.cfg.Device }

// SetPeer programs (or reprograms) the entries for p; entries for an earlier
// version of the same peer are removed first when anything changed.
func (o *Overlay) SetPeer(p Peer) error {
	if p.NodeIP.To4() == nil || p.PodCIDR == nil || p.PodCIDR.IP.To4() == nil || len(p.MAC) != 6 {
		return fmt.Errorf("%w: peer %q needs an IPv4 node IP, an IPv4 pod range and a MAC (have %v %v %v)",
			ErrBadPeer, p.Name, p.NodeIP, p.PodCIDR, p.MAC)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if old, ok := o.peers[p.Name]; ok {
		if old.equal(p) {
			return nil
		}
		if err := o.removeEntries(old); err != nil {
			return err
		}
		delete(o.peers, p.Name)
	}
	idx := o.link.Attrs().Index
	fdb := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, IP: p.NodeIP.To4(), HardwareAddr: p.MAC}
	if err := o.h.NeighSet(fdb); err != nil {
		return fmt.Errorf("overlay: fdb %s → %s for %q: %w", p.MAC, p.NodeIP, p.Name, err)
	}
	neigh := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		Type: unix.RTN_UNICAST, IP: p.gateway(), HardwareAddr: p.MAC}
	if err := o.h.NeighSet(neigh); err != nil {
		return fmt.Errorf("overlay: neighbour %s → %s for %q: %w", p.gateway(), p.MAC, p.Name, err)
	}
	if err := o.h.RouteReplace(o.route(p)); err != nil {
		return fmt.Errorf("overlay: route %s via %s for %q: %w", p.PodCIDR, p.gateway(), p.Name, err)
	}
	o.peers[p.Name] = p
	o.log.Info("peer programmed", "node", p.Name, "nodeIP", p.NodeIP, "podCIDR", p.PodCIDR, "mac", p.MAC.String())
	return nil
}

func (o *Overlay) route(p Peer) *netlink.Route {
	return &netlink.Route{LinkIndex: o.link.Attrs().Index, Scope: netlink.SCOPE_UNIVERSE,
		Dst: &net.IPNet{IP: p.PodCIDR.IP.Mask(p.PodCIDR.Mask), Mask: p.PodCIDR.Mask},
		Gw:  p.gateway(), Flags: int(netlink.FLAG_ONLINK)}
}

// RemovePeer deletes the entries of the named peer (none: no-op).
func (o *Overlay) RemovePeer(name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.peers[name]
	if !ok {
		return nil
	}
	if err := o.removeEntries(p); err != nil {
		return err
	}
	delete(o.peers, name)
	o.log.Info("peer removed", "node", name, "podCIDR", p.PodCIDR)
	return nil
}

// removeEntries deletes route, neighbour and FDB entry; ones already gone are fine.
func (o *Overlay) removeEntries(p Peer) error {
	idx := o.link.Attrs().Index
	var errs []error
	if err := o.h.RouteDel(o.route(p)); err != nil && !errors.Is(err, unix.ESRCH) {
		errs = append(errs, fmt.Errorf("route %s: %w", p.PodCIDR, err))
	}
	if err := o.h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, IP: p.gateway(),
		HardwareAddr: p.MAC}); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("neighbour %s: %w", p.gateway(), err))
	}
	if err := o.h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		IP: p.NodeIP.To4(), HardwareAddr: p.MAC}); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("fdb %s: %w", p.MAC, err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("overlay: remove peer %q: %w", p.Name, err)
	}
	return nil
}

// Peers are the names of the programmed peers.
func (o *Overlay) Peers() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	names := make([]string, 0, len(o.peers))
	for n := range o.peers {
		names = append(names, n)
	}
	return names
}

// Close releases the netlink handle; the device and its entries stay (pods
// keep their connectivity across an agent restart).
// Closing twice is a no-op (a second close of the sockets could close
// descriptors reused meanwhile).
func (o *Overlay) Close() { o.closeOnce.Do(o.h.Close) }

// Delete removes the vxlan device (and with it every entry) and closes.
func (o *Overlay) Delete() error {
	defer o.Close()
	if err := o.h.LinkDel(o.link); err != nil {
		return fmt.Errorf("overlay: delete %s: %w", o.cfg.Device, err)
	}
	return nil
}

// PeerFromNode reads a peer from a Node: InternalIP address, spec.podCIDR and
// MACAnnotation. A node missing any of them is ErrNotReady.
func PeerFromNode(n *apiv1.Node) (Peer, error) {
	name := n.GetMetadata().GetName()
	p := Peer{Name: name}
	for _, a := range n.GetStatus().GetAddresses() {
		if a.GetType() == "InternalIP" {
			if p.NodeIP = net.ParseIP(a.GetAddress()).To4(); p.NodeIP == nil {
				return p, fmt.Errorf("%w: node %q: InternalIP %q is not an IPv4 address", ErrBadPeer, name, a.GetAddress())
			}
			break
		}
	}
	cidr := n.GetSpec().GetPodCIDR()
	mac := n.GetMetadata().GetAnnotations()[MACAnnotation]
	if p.NodeIP == nil || cidr == "" || mac == "" {
		return p, fmt.Errorf("%w: node %q (InternalIP %v, podCIDR %q, %s %q)", ErrNotReady, name, p.NodeIP, cidr, MACAnnotation, mac)
	}
	_, ipn, err := net.ParseCIDR(cidr)
	if err != nil || ipn.IP.To4() == nil {
		return p, fmt.Errorf("%w: node %q: spec.podCIDR %q is not an IPv4 range", ErrBadPeer, name, cidr)
	}
	p.PodCIDR = ipn
	if p.MAC, err = net.ParseMAC(mac); err != nil || len(p.MAC) != 6 {
		return p, fmt.Errorf("%w: node %q: annotation %s %q is not a MAC", ErrBadPeer, name, MACAnnotation, mac)
	}
	return p, nil
}

// Handler keeps the overlay's peers in step with a Node informer: every Node
// but self that has address, range and MAC is a peer; one that is deleted or
// loses any of them has its entries removed. Errors are logged (the next
// event for that node retries).
func (o *Overlay) Handler(self string) client.EventHandler {
	apply := func(obj client.Object) {
		n, ok := obj.(*apiv1.Node)
		if !ok || n.GetMetadata().GetName() == self {
			return
		}
		p, err := PeerFromNode(n)
		if err != nil {
			if !errors.Is(err, ErrNotReady) {
				o.log.Warn("node is no peer", "err", err)
			}
			if err := o.RemovePeer(p.Name); err != nil {
				o.log.Error("remove peer", "node", p.Name, "err", err)
			}
			return
		}
		if err := o.SetPeer(p); err != nil {
			o.log.Error("program peer", "node", p.Name, "err", err)
		}
	}
	return client.EventHandler{
		OnAdd:    apply,
		OnUpdate: func(_, cur client.Object) { apply(cur) },
		OnDelete: func(obj client.Object) {
			name := obj.GetMetadata().GetName()
			if name == self {
				return
			}
			if err := o.RemovePeer(name); err != nil {
				o.log.Error("remove peer", "node", name, "err", err)
			}
		},
	}
}

// UnderlayMTU is the MTU of the link holding nodeIP in the caller's network
// namespace; pod interfaces over the overlay get this minus Overhead.
func UnderlayMTU(nodeIP net.IP) (int, error) {
	h, err := handle("")
	if err != nil {
		return 0, err
	}
	defer h.Close()
	o := &Overlay{cfg: Config{NodeIP: nodeIP}, h: h}
	l, err := o.underlay()
	if err != nil {
		return 0, err
	}
	return l.Attrs().MTU, nil
}
