package netproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ipvsFlagPersistent is IP_VS_SVC_F_PERSISTENT: session affinity.
const ipvsFlagPersistent = 0x1

// probeAddr is a benchmarking-range address (RFC 2544) used only for the
// few microseconds the probe service exists; it is never routed.
var probeAddr = net.ParseIP("198.18.255.254")

// nsPath names ns for libraries that open a namespace by path.
func nsPath(ns netns.NsHandle) string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns)) }

func init() {
	registerBackend(backendType{name: BackendIPVS, preference: 1, probe: probeIPVS, unavailable: ErrNoIPVS,
		build: func(cfg Config, ns netns.NsHandle, log *slog.Logger) (backend, error) {
			return newIPVSBackend(cfg, ns, log)
		}})
}

// probeIPVS reports whether IPVS really works in ns. moby/ipvs returns nil
// from every call when the ip_vs generic netlink family is missing, so the
// probe creates a service and reads it back.
func probeIPVS(ns netns.NsHandle) (string, bool) {
	if _, err := readNetFile(ns, "ip_vs"); err != nil {
		return "no /proc/net/ip_vs (ip_vs module not loaded or not built)", false
	}
	h, err := ipvs.New(nsPath(ns))
	if err != nil {
		return fmt.Sprintf("ipvs netlink: %v", err), false
	}
	defer h.Close()
	svc := &ipvs.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: probeAddr, Port: 9,
		SchedName: ipvs.RoundRobin, Netmask: 0xffffffff}
	if err := h.NewService(svc); err != nil {
		return fmt.Sprintf("creating a probe IPVS service failed: %v", err), false
	}
	defer h.DelService(svc) //nolint:errcheck // best effort; the probe address is never used
	got, err := h.GetService(svc)
	if err != nil || got == nil {
		return fmt.Sprintf("probe IPVS service not readable back (err=%v)", err), false
	}
	return "probe IPVS service created and read back", true
}

// vsKey identifies an IPVS virtual service.
type vsKey struct {
	IP    netip.Addr
	Proto Protocol
	Port  uint16
}

func (k vsKey) String() string { return fmt.Sprintf("%s:%s:%d", k.Proto, k.IP, k.Port) }

type vsState struct {
	affinity time.Duration
	dests    map[netip.AddrPort]int // weight; 0 = quiescent (draining or not ready)
}

// ipvsBackend implements Services with IPVS in NAT (masquerade) mode.
type ipvsBackend struct {
	cfg  Config
	log  *slog.Logger
	ns   netns.NsHandle
	h    *ipvs.Handle
	nl   *netlink.Handle
	rt   *mdnetlink.Conn // strict rtnetlink for per-interface address dumps
	mark *ipvsMarks
	// known: kernel state after the last good sync; nil: read it back.
	known    map[vsKey]*vsState
	knownIPs map[netip.Addr]bool // addresses on the dummy interface
	// gone are destinations whose endpoint disappeared: weight 0 since the
	// time recorded, deleted when their connections end or the grace passes.
	gone map[vsKey]map[netip.AddrPort]time.Time
	// For incremental syncs: what each service port asked for at the last
	// sync, how many service ports need each dummy address and hairpin
	// element, and the node addresses NodePorts were programmed on.
	perSvc      map[string]*ipvsPort
	rules       int // virtual services + destinations in known
	ipRefs      map[netip.Addr]int
	loopRefs    map[string]int
	lastNodeIPs []netip.Addr
}

// ipvsPort is one service port's share of the kernel state.
type ipvsPort struct {
	vs    map[vsKey]*vsState // ClusterIP and NodePort virtual services
	ips   []netip.Addr       // ClusterIPs, held by the dummy interface
	marks *markSets          // its elements of the mark sets
}

func newIPVSBackend(cfg Config, ns netns.NsHandle, log *slog.Logger) (*ipvsBackend, error) {
	h, err := ipvs.New(nsPath(ns))
	if err != nil {
		return nil, fmt.Errorf("ipvs handle: %w", err)
	}
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	marks, err := newIPVSMarks(cfg, ns, log)
	if err != nil {
		h.Close()
		nl.Close()
		return nil, err
	}
	return &ipvsBackend{cfg: cfg, log: log, ns: ns, h: h, nl: nl, mark: marks,
		gone: map[vsKey]map[netip.AddrPort]time.Time{}}, nil
}

func (b *ipvsBackend) name() string { return BackendIPVS }

func (b *ipvsBackend) close() error {
	b.h.Close()
	b.nl.Close()
	if b.rt != nil {
		b.rt.Close()
	}
	return b.mark.close()
}

func (b *ipvsBackend) cleanup() error {
	var errs []error
	if b.known == nil {
		if err := b.readKernel(); err != nil {
			return err
		}
	}
	for k := range b.known {
		errs = append(errs, b.h.DelService(ipvsService(k, 0, b.cfg.IPVS.Scheduler)))
	}
	if l, err := b.nl.LinkByName(b.cfg.IPVS.Interface); err == nil {
		errs = append(errs, b.nl.LinkDel(l))
	}
	errs = append(errs, b.mark.cleanup())
	b.known = nil
	return errors.Join(errs...)
}

// setupKernel sets the sysctls and timeouts IPVS needs; each one is a
// pitfall Kubernetes or Swarm users hit.
func (b *ipvsBackend) setupKernel() error {
	reuse := "1"
	if kernelOlderThan(5, 9) {
		// Before 5.9, conn_reuse_mode=1 with conntrack=1 dropped the SYN of
		// a connection reusing a source port of a recent one, costing a 1 s
		// retransmit (kubernetes#81775); 0 avoids that but sends reused
		// ports to the old, possibly terminating real server. 5.9+ fixed
		// the drop, so keep 1 there: graceful termination depends on it.
		reuse = "0"
	}
	settings := []struct{ name, value, why string }{
		// Conntrack must see IPVS connections, or nftables masquerade (and
		// any stateful filtering) never applies to them.
		{"net.ipv4.vs.conntrack", "1", "masquerade"},
		{"net.ipv4.vs.conn_reuse_mode", reuse, "port reuse"},
		// Packets of a connection whose real server was deleted: expire the
		// entry at once so the client gets a reset instead of a hang
		// (kubernetes#71358).
		{"net.ipv4.vs.expire_nodest_conn", "1", "deleted real servers"},
		// With session affinity, a persistence template pointing at a
		// quiescent (weight 0) server is expired so new connections of that
		// client go to a live server (kubernetes#71358).
		{"net.ipv4.vs.expire_quiescent_template", "1", "affinity to draining servers"},
		// ClusterIPs sit on a local dummy interface; never answer ARP for
		// them on real interfaces.
		{"net.ipv4.conf.all.arp_ignore", "1", "ARP"},
		{"net.ipv4.conf.all.arp_announce", "2", "ARP"},
		// IPVS NAT mode forwards to endpoints in other namespaces/hosts.
		{"net.ipv4.ip_forward", "1", "forwarding"},
	}
	for _, s := range settings {
		if err := writeSysctl(b.ns, s.name, s.value); err != nil {
			return fmt.Errorf("ipvs setup (%s): %w", s.why, err)
		}
	}
	// Long-lived idle connections: see IPVSConfig.TCPTimeout.
	if err := b.h.SetConfig(&ipvs.Config{TimeoutTCP: b.cfg.IPVS.TCPTimeout,
		TimeoutTCPFin: b.cfg.IPVS.TCPFinTimeout, TimeoutUDP: b.cfg.IPVS.UDPTimeout}); err != nil {
		return fmt.Errorf("ipvs timeouts: %w", err)
	}
	return b.ensureDummy()
}

func kernelOlderThan(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, _ := strconv.Atoi(parts[0])
	mnr, _ := strconv.Atoi(strings.TrimLeftFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return maj < major || (maj == major && mnr < minor)
}

func (b *ipvsBackend) ensureDummy() error {
	l, err := b.nl.LinkByName(b.cfg.IPVS.Interface)
	if err != nil {
		if err := b.nl.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: b.cfg.IPVS.Interface}}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create %s: %w", b.cfg.IPVS.Interface, err)
		}
		if l, err = b.nl.LinkByName(b.cfg.IPVS.Interface); err != nil {
			return fmt.Errorf("find %s: %w", b.cfg.IPVS.Interface, err)
		}
	}
	if err := b.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", b.cfg.IPVS.Interface, err)
	}
	return nil
}

// portState computes what one service port needs.
func portState(sp *servicePortState, nodeIPs []netip.Addr) *ipvsPort {
	p := &ipvsPort{vs: map[vsKey]*vsState{}, marks: newMarkSets()}
	st := &vsState{affinity: sp.Affinity, dests: map[netip.AddrPort]int{}}
	for _, ep := range sp.Ready {
		st.dests[ep] = 1
		p.marks.loopback[string(loopbackKey(ep))] = true
	}
	for _, ep := range sp.Terminating {
		st.dests[ep] = 0 // listed but not ready: no new connections
	}
	for _, ip := range sp.ClusterIPs {
		p.vs[vsKey{ip, sp.Port.Protocol, sp.Port.Port}] = st
		p.ips = append(p.ips, ip)
		p.marks.clusterIPs[string(serviceKey(ip, sp.Port.Protocol, sp.Port.Port))] = true
	}
	if sp.Port.NodePort != 0 {
		for _, ip := range nodeIPs {
			p.vs[vsKey{ip, sp.Port.Protocol, sp.Port.NodePort}] = st
			p.marks.nodePorts[string(serviceKey(ip, sp.Port.Protocol, sp.Port.NodePort))] = true
		}
	}
	return p
}

func ipvsService(k vsKey, affinity time.Duration, sched string) *ipvs.Service {
	s := &ipvs.Service{AddressFamily: unix.AF_INET, Protocol: uint16(k.Proto.number()), Address: k.IP.AsSlice(),
		Port: k.Port, SchedName: sched, Netmask: 0xffffffff}
	if affinity > 0 {
		s.Flags = ipvsFlagPersistent
		s.Timeout = uint32(affinity / time.Second)
	}
	return s
}

func ipvsDest(ap netip.AddrPort, weight int) *ipvs.Destination {
	return &ipvs.Destination{AddressFamily: unix.AF_INET, Address: ap.Addr().AsSlice(), Port: ap.Port(),
		Weight: weight, ConnectionFlags: ipvs.ConnectionFlagMasq}
}

// readKernel loads the virtual services and dummy addresses from the kernel.
func (b *ipvsBackend) readKernel() error {
	svcs, err := b.h.GetServices()
	if err != nil {
		return fmt.Errorf("ipvs: list services: %w", err)
	}
	known := map[vsKey]*vsState{}
	for _, s := range svcs {
		ip, ok := netip.AddrFromSlice(s.Address.To4())
		if !ok || s.FWMark != 0 {
			continue
		}
		proto := TCP
		if s.Protocol == unix.IPPROTO_UDP {
			proto = UDP
		}
		st := &vsState{dests: map[netip.AddrPort]int{}}
		if s.Flags&ipvsFlagPersistent != 0 {
			st.affinity = time.Duration(s.Timeout) * time.Second
		}
		dests, err := b.h.GetDestinations(s)
		if err != nil {
			return fmt.Errorf("ipvs: list destinations of %s: %w", s.Address, err)
		}
		for _, d := range dests {
			dip, _ := netip.AddrFromSlice(d.Address.To4())
			st.dests[netip.AddrPortFrom(dip, d.Port)] = d.Weight
		}
		known[vsKey{ip, proto, s.Port}] = st
	}
	ips := map[netip.Addr]bool{}
	if l, err := b.nl.LinkByName(b.cfg.IPVS.Interface); err == nil {
		addrs, err := b.nl.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("list %s addresses: %w", b.cfg.IPVS.Interface, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
				ips[ip] = true
			}
		}
	}
	b.known, b.knownIPs = known, ips
	return nil
}

func (b *ipvsBackend) sync(ctx context.Context, want desiredState, changed map[string]bool, full bool) (syncResult, error) {
	if full || b.known == nil {
		if err := b.setupKernel(); err != nil {
			return syncResult{}, err
		}
		if err := b.readKernel(); err != nil {
			b.known = nil
			return syncResult{}, err
		}
	}
	nodeIPs, err := b.nodeIPs()
	if err != nil {
		return syncResult{}, err
	}
	var n, recomputed int
	if full || changed == nil || b.perSvc == nil || !slices.Equal(nodeIPs, b.lastNodeIPs) {
		n, err = b.syncAll(want, nodeIPs, full)
		recomputed = len(want)
	} else {
		n, err = b.syncChanged(want, changed, nodeIPs)
		recomputed = len(changed)
	}
	if err != nil {
		b.known, b.perSvc = nil, nil // re-read and recompute next time
		return syncResult{}, err
	}
	b.lastNodeIPs = nodeIPs
	return syncResult{Rules: b.rules, Changed: n, Recomputed: recomputed}, nil
}

// syncAll recomputes every service port and compares it with b.known (the
// kernel as last read or changed).
func (b *ipvsBackend) syncAll(want desiredState, nodeIPs []netip.Addr, full bool) (int, error) {
	b.perSvc = make(map[string]*ipvsPort, len(want))
	b.ipRefs, b.loopRefs = map[netip.Addr]int{}, map[string]int{}
	desired := map[vsKey]*vsState{}
	marks := newMarkSets()
	for id, sp := range want {
		p := portState(sp, nodeIPs)
		b.perSvc[id] = p
		for k, st := range p.vs {
			desired[k] = st
		}
		for _, ip := range p.ips {
			b.ipRefs[ip]++
		}
		maps.Copy(marks.clusterIPs, p.marks.clusterIPs)
		maps.Copy(marks.nodePorts, p.marks.nodePorts)
		for k := range p.marks.loopback {
			b.loopRefs[k]++
			marks.loopback[k] = true
		}
	}
	wantIPs := map[netip.Addr]bool{}
	for ip := range b.ipRefs {
		wantIPs[ip] = true
	}
	ips := make([]netip.Addr, 0, len(b.knownIPs)+len(wantIPs))
	for ip := range b.knownIPs {
		ips = append(ips, ip)
	}
	for ip := range wantIPs {
		ips = append(ips, ip)
	}
	changed, err := b.apply(desired, nil, wantIPs, ips, nodeIPs)
	if err != nil {
		return changed, err
	}
	b.rules = len(b.known)
	for _, st := range b.known {
		b.rules += len(st.dests)
	}
	n, err := b.mark.sync(marks, full)
	return changed + n, err
}

// syncChanged recomputes only the changed service ports and changes only
// their virtual services, addresses and mark elements.
func (b *ipvsBackend) syncChanged(want desiredState, changedIDs map[string]bool, nodeIPs []netip.Addr) (int, error) {
	desired := map[vsKey]*vsState{}
	scope := map[vsKey]bool{}
	haveM, wantM := newMarkSets(), newMarkSets()
	touchedIPs := map[netip.Addr]bool{}
	loopBefore := map[string]int{}
	count := func(p *ipvsPort, delta int, m *markSets) {
		for k := range p.vs {
			scope[k] = true
		}
		for _, ip := range p.ips {
			touchedIPs[ip] = true
			b.ipRefs[ip] += delta
		}
		maps.Copy(m.clusterIPs, p.marks.clusterIPs)
		maps.Copy(m.nodePorts, p.marks.nodePorts)
		for k := range p.marks.loopback {
			if _, ok := loopBefore[k]; !ok {
				loopBefore[k] = b.loopRefs[k]
			}
			b.loopRefs[k] += delta
		}
	}
	for id := range changedIDs {
		if old := b.perSvc[id]; old != nil {
			count(old, -1, haveM)
			delete(b.perSvc, id)
		}
		if sp := want[id]; sp != nil {
			p := portState(sp, nodeIPs)
			b.perSvc[id] = p
			count(p, +1, wantM)
			for k, st := range p.vs {
				desired[k] = st
			}
		}
	}
	// hairpin elements are shared by every service an endpoint is in
	for k, before := range loopBefore {
		if before > 0 {
			haveM.loopback[k] = true
		}
		if b.loopRefs[k] > 0 {
			wantM.loopback[k] = true
		} else {
			delete(b.loopRefs, k)
		}
	}
	wantIPs := map[netip.Addr]bool{}
	ips := make([]netip.Addr, 0, len(touchedIPs))
	for ip := range touchedIPs {
		ips = append(ips, ip)
		if b.ipRefs[ip] > 0 {
			wantIPs[ip] = true
		} else {
			delete(b.ipRefs, ip)
		}
	}
	// the rule count changes only in scope and where destinations drain
	counted := maps.Clone(scope)
	for k := range b.gone {
		counted[k] = true
	}
	countRules := func() int {
		n := 0
		for k := range counted {
			if st := b.known[k]; st != nil {
				n += 1 + len(st.dests)
			}
		}
		return n
	}
	before := countRules()
	changed, err := b.apply(desired, scope, wantIPs, ips, nodeIPs)
	if err != nil {
		return changed, err
	}
	b.rules += countRules() - before
	n, err := b.mark.change(haveM, wantM)
	return changed + n, err
}

// apply changes IPVS and the dummy addresses from b.known to desired.
// scope names the virtual services to compare (nil: all of b.known);
// ips the dummy addresses to compare with wantIPs. b.known follows every
// successful change so that a failure part-way leaves an accurate picture.
func (b *ipvsBackend) apply(desired map[vsKey]*vsState, scope map[vsKey]bool, wantIPs map[netip.Addr]bool, ips, nodeIPs []netip.Addr) (int, error) {
	sched := b.cfg.IPVS.Scheduler
	changed := 0
	// ClusterIPs must be local before IPVS can see their packets.
	if l, err := b.nl.LinkByName(b.cfg.IPVS.Interface); err == nil {
		for _, a := range nodeIPs {
			delete(wantIPs, a) // NodePort services sit on node addresses
		}
		for _, ip := range ips {
			if wantIPs[ip] && !b.knownIPs[ip] {
				if err := b.nl.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil && !errors.Is(err, unix.EEXIST) {
					return changed, fmt.Errorf("add %s to %s: %w", ip, b.cfg.IPVS.Interface, err)
				}
				b.knownIPs[ip] = true
				changed++
			}
		}
		defer func() {
			for _, ip := range ips {
				if b.knownIPs[ip] && !wantIPs[ip] {
					if err := b.nl.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err == nil || errors.Is(err, unix.EADDRNOTAVAIL) {
						delete(b.knownIPs, ip)
					}
				}
			}
		}()
	}
	for k, want := range desired {
		have, ok := b.known[k]
		svc := ipvsService(k, want.affinity, sched)
		if !ok {
			if err := b.h.NewService(svc); err != nil {
				return changed, fmt.Errorf("ipvs: add service %s: %w", k, err)
			}
			have = &vsState{affinity: want.affinity, dests: map[netip.AddrPort]int{}}
			b.known[k] = have
			changed++
		} else if have.affinity != want.affinity {
			if err := b.h.UpdateService(svc); err != nil {
				return changed, fmt.Errorf("ipvs: update service %s: %w", k, err)
			}
			have.affinity = want.affinity
			changed++
		}
		for ep, w := range want.dests {
			hw, ok := have.dests[ep]
			switch {
			case !ok:
				if err := b.h.NewDestination(svc, ipvsDest(ep, w)); err != nil {
					return changed, fmt.Errorf("ipvs: add %s to %s: %w", ep, k, err)
				}
			case hw != w:
				if err := b.h.UpdateDestination(svc, ipvsDest(ep, w)); err != nil {
					return changed, fmt.Errorf("ipvs: set weight of %s in %s: %w", ep, k, err)
				}
			default:
				continue
			}
			have.dests[ep] = w
			if g := b.gone[k]; g != nil {
				delete(g, ep) // came back
			}
			changed++
		}
		// Graceful termination (kubernetes#57841): a vanished endpoint gets
		// weight 0 (no new connections, existing ones continue) and is
		// deleted once drained.
		for ep, hw := range have.dests {
			if _, ok := want.dests[ep]; ok {
				continue
			}
			if b.gone[k] == nil {
				b.gone[k] = map[netip.AddrPort]time.Time{}
			}
			if _, ok := b.gone[k][ep]; !ok {
				b.gone[k][ep] = time.Now()
			}
			if hw != 0 {
				if err := b.h.UpdateDestination(svc, ipvsDest(ep, 0)); err != nil {
					return changed, fmt.Errorf("ipvs: quiesce %s in %s: %w", ep, k, err)
				}
				have.dests[ep] = 0
				changed++
			}
		}
	}
	if scope == nil {
		scope = make(map[vsKey]bool, len(b.known))
		for k := range b.known {
			scope[k] = true
		}
	}
	for k := range scope {
		if _, ok := desired[k]; ok {
			continue
		}
		if _, ok := b.known[k]; !ok {
			continue
		}
		// A Service that is gone takes its connections with it;
		// expire_nodest_conn turns them into resets rather than hangs.
		if err := b.h.DelService(ipvsService(k, 0, sched)); err != nil {
			return changed, fmt.Errorf("ipvs: delete service %s: %w", k, err)
		}
		delete(b.known, k)
		delete(b.gone, k)
		changed++
	}
	n, err := b.reapDrained()
	return changed + n, err
}

// reapDrained deletes quiesced destinations of vanished endpoints whose
// connections have ended, or whose grace period is over. UDP has no
// connection end, so UDP destinations go at once (like kube-proxy);
// expire_nodest_conn then moves their clients on with their next packet.
// Inactive TCP entries (FIN_WAIT, TIME_WAIT) do not hold a destination back:
// their exchange is over and waiting for them would keep every removed pod
// in IPVS for two minutes.
func (b *ipvsBackend) reapDrained() (int, error) {
	changed := 0
	for k, eps := range b.gone {
		have := b.known[k]
		if have == nil || len(eps) == 0 {
			delete(b.gone, k)
			continue
		}
		svc := ipvsService(k, have.affinity, b.cfg.IPVS.Scheduler)
		active := map[netip.AddrPort]int{}
		if k.Proto == TCP {
			dests, err := b.h.GetDestinations(svc)
			if err != nil {
				return changed, fmt.Errorf("ipvs: read destinations of %s: %w", k, err)
			}
			for _, d := range dests {
				ip, _ := netip.AddrFromSlice(d.Address.To4())
				active[netip.AddrPortFrom(ip, d.Port)] = d.ActiveConnections
			}
		}
		for ep, since := range eps {
			if active[ep] > 0 && time.Since(since) < b.cfg.IPVS.TerminationGrace {
				continue
			}
			if err := b.h.DelDestination(svc, ipvsDest(ep, 0)); err != nil {
				return changed, fmt.Errorf("ipvs: delete %s from %s: %w", ep, k, err)
			}
			delete(have.dests, ep)
			delete(eps, ep)
			changed++
		}
	}
	return changed, nil
}

// draining reports whether destinations wait to be deleted (Run then syncs
// every second to reap them).
func (b *ipvsBackend) draining() bool {
	for _, eps := range b.gone {
		if len(eps) > 0 {
			return true
		}
	}
	return false
}
