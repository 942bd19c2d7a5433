package netpol

import (
	"net/netip"
	"slices"
)

// Allows reports what the node's data path does with a new connection
// from src to dst (proto, destination port) on the forward path: the same
// decision the nftables program makes, for tests and for reading a model.
func (m *Model) Allows(src, dst netip.Addr, proto uint8, port uint16) bool {
	sets := make(map[string]*Set, len(m.Sets))
	for i := range m.Sets {
		sets[m.Sets[i].Name] = &m.Sets[i]
	}
	check := func(dir Direction, local, peer netip.Addr) bool {
		for _, r := range m.Rules {
			if r.Dir != dir || !sets[r.Local].has(local) || (r.Peer != "" && !sets[r.Peer].has(peer)) {
				continue
			}
			if r.Proto != 0 && r.Proto != proto {
				continue
			}
			if r.PortFirst != 0 && (port < r.PortFirst || port > r.PortLast) {
				continue
			}
			if r.Named != "" && !slices.Contains(sets[r.Named].Tuples, Tuple{dst, proto, port}) {
				continue
			}
			return true
		}
		return false
	}
	if slices.Contains(m.EgressIsolated, src) && !check(Egress, src, dst) {
		return false
	}
	if slices.Contains(m.IngressIsolated, dst) && !check(Ingress, dst, src) {
		return false
	}
	return true
}

func (s *Set) has(a netip.Addr) bool {
	if s == nil {
		return false
	}
	switch s.Kind {
	case AddrSet:
		return slices.Contains(s.Addrs, a)
	case RangeSet:
		for _, r := range s.Ranges {
			if r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0 {
				return true
			}
		}
	}
	return false
}
