package netproxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	mdnetlink "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nodeIPs are the IPv4 addresses NodePorts answer on: all of the
// namespace's except loopback and the ClusterIPs on the dummy interface.
//
// The dummy interface holds every ClusterIP, so one dump of all addresses
// costs as much as the number of services (it was most of a one-service
// change at 10,000 services). Instead each other interface's addresses are
// dumped on their own: with strict checking (NETLINK_GET_STRICT_CHK, Linux
// 4.20+) the kernel filters the dump by the interface index in the request.
func (b *ipvsBackend) nodeIPs() ([]netip.Addr, error) {
	links, err := b.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []netip.Addr
	for _, l := range links {
		if l.Attrs().Name == b.cfg.IPVS.Interface {
			continue
		}
		addrs, err := b.interfaceIPv4(l.Attrs().Index)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, ip := range addrs {
			if !ip.IsLoopback() {
				out = append(out, ip)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), nil
}

// interfaceIPv4 dumps the IPv4 addresses of one interface.
func (b *ipvsBackend) interfaceIPv4(index int) ([]netip.Addr, error) {
	if b.rt == nil {
		c, err := mdnetlink.Dial(unix.NETLINK_ROUTE, &mdnetlink.Config{NetNS: int(b.ns), Strict: true})
		if err != nil {
			return nil, fmt.Errorf("rtnetlink: %w", err)
		}
		b.rt = c
	}
	// struct ifaddrmsg: family, prefixlen, flags, scope (u8 each), index (u32)
	req := make([]byte, unix.SizeofIfAddrmsg)
	req[0] = unix.AF_INET
	binary.NativeEndian.PutUint32(req[4:], uint32(index))
	msgs, err := b.rt.Execute(mdnetlink.Message{
		Header: mdnetlink.Header{Type: unix.RTM_GETADDR, Flags: mdnetlink.Request | mdnetlink.Dump},
		Data:   req})
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, m := range msgs {
		if len(m.Data) < unix.SizeofIfAddrmsg || m.Data[0] != unix.AF_INET ||
			binary.NativeEndian.Uint32(m.Data[4:8]) != uint32(index) {
			continue // the kernel filters; this guards against one that does not
		}
		ad, err := mdnetlink.NewAttributeDecoder(m.Data[unix.SizeofIfAddrmsg:])
		if err != nil {
			return nil, err
		}
		var local, address netip.Addr
		for ad.Next() {
			switch ad.Type() {
			case unix.IFA_LOCAL:
				local, _ = netip.AddrFromSlice(ad.Bytes())
			case unix.IFA_ADDRESS:
				address, _ = netip.AddrFromSlice(ad.Bytes())
			}
		}
		// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer
		// on point-to-point links and the same as IFA_LOCAL otherwise.
		if local.IsValid() {
			out = append(out, local)
		} else if address.IsValid() {
			out = append(out, address)
		}
	}
	return out, nil
}
