package netpol

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// Direction of a rule: traffic to (Ingress) or from (Egress) local pods.
type Direction string

const (
	Ingress Direction = "Ingress"
	Egress  Direction = "Egress"
)

// IP protocol numbers.
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

var protoNumbers = map[string]uint8{"TCP": ProtoTCP, "UDP": ProtoUDP, "SCTP": ProtoSCTP}

// SetKind is what a set's elements are.
type SetKind int

const (
	// AddrSet holds single IPv4 addresses.
	AddrSet SetKind = iota
	// RangeSet holds disjoint IPv4 address ranges (an interval set).
	RangeSet
	// TupleSet holds ipv4 address . protocol . port.
	TupleSet
)

// AddrRange is First..Last inclusive.
type AddrRange struct{ First, Last netip.Addr }

// Tuple is one element of a TupleSet.
type Tuple struct {
	Addr  netip.Addr
	Proto uint8
	Port  uint16
}

// Set is one named nftables set of the model.
type Set struct {
	Name   string
	Kind   SetKind
	Addrs  []netip.Addr // AddrSet
	Ranges []AddrRange  // RangeSet
	Tuples []Tuple      // TupleSet
}

// Rule allows traffic of one direction. Local names the set of local pods
// the rule's policy selects (matched on the destination for Ingress, the
// source for Egress); Peer, when set, the set the other address must be in.
// Proto (0: any) with PortFirst..PortLast (0: any port) restricts the
// destination; Named, when set, is a TupleSet matched on destination
// address . protocol . port (a named port, resolved per pod).
type Rule struct {
	Dir                 Direction
	Local, Peer, Named  string
	Proto               uint8
	PortFirst, PortLast uint16
}

// Model is what the node programs: the isolated local pods of each
// direction, the allow rules, and the sets they use.
type Model struct {
	IngressIsolated []netip.Addr
	EgressIsolated  []netip.Addr
	Rules           []Rule
	Sets            []Set // sorted by name
}

// fingerprint hashes the set's elements (to tell a changed set).
func (s *Set) fingerprint() uint64 {
	h := fnv.New64a()
	for _, a := range s.Addrs {
		b := a.As4()
		h.Write(b[:])
	}
	h.Write([]byte{0})
	for _, r := range s.Ranges {
		f, l := r.First.As4(), r.Last.As4()
		h.Write(f[:])
		h.Write(l[:])
	}
	h.Write([]byte{0})
	for _, t := range s.Tuples {
		a := t.Addr.As4()
		h.Write(append(a[:], t.Proto, byte(t.Port>>8), byte(t.Port)))
	}
	return h.Sum64()
}

// Structure is the part of the model that needs the table rewritten when
// it changes: rules and set declarations, not set elements.
func (m *Model) Structure() string {
	var b strings.Builder
	for _, r := range m.Rules {
		fmt.Fprintf(&b, "%+v\n", r)
	}
	for _, s := range m.Sets {
		fmt.Fprintf(&b, "set %s %d\n", s.Name, s.Kind)
	}
	return b.String()
}

// Input is the node's view of the cluster.
type Input struct {
	Node       string
	Pods       []*apiv1.Pod
	Namespaces []*apiv1.Namespace
	Policies   []*apiv1.NetworkPolicy
}

// NamespaceNameLabel is the label Kubernetes puts on every namespace; the
// compiler adds it, so `namespaceSelector` can name namespaces.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

type pod struct {
	ns     string
	labels map[string]string
	ip     netip.Addr
	local  bool
	ports  map[string][]Tuple // container port name -> (ip, proto, port)
}

// Compile turns in into the node's Model. Policies are taken in namespace
// and name order so the same input always gives the same model.
func Compile(in Input) *Model {
	nsLabels := map[string]map[string]string{}
	for _, ns := range in.Namespaces {
		l := map[string]string{NamespaceNameLabel: ns.GetMetadata().GetName()}
		for k, v := range ns.GetMetadata().GetLabels() {
			l[k] = v
		}
		nsLabels[ns.GetMetadata().GetName()] = l
	}
	var pods []pod
	for _, p := range in.Pods {
		if pp, ok := podOf(p, in.Node); ok {
			pods = append(pods, pp)
		}
	}
	policies := slices.Clone(in.Policies)
	slices.SortFunc(policies, func(a, b *apiv1.NetworkPolicy) int {
		return strings.Compare(a.GetMetadata().GetNamespace()+"/"+a.GetMetadata().GetName(),
			b.GetMetadata().GetNamespace()+"/"+b.GetMetadata().GetName())
	})
	c := compiler{m: &Model{}, pods: pods, nsLabels: nsLabels}
	inIso, egIso := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, np := range policies {
		c.policy(np, inIso, egIso)
	}
	c.m.IngressIsolated, c.m.EgressIsolated = sortedAddrs(inIso), sortedAddrs(egIso)
	slices.SortFunc(c.m.Sets, func(a, b Set) int { return strings.Compare(a.Name, b.Name) })
	return c.m
}

func podOf(p *apiv1.Pod, node string) (pod, bool) {
	ip, err := netip.ParseAddr(p.GetStatus().GetPodIP())
	if err != nil || !ip.Is4() || p.GetSpec().GetHostNetwork() {
		return pod{}, false
	}
	if ph := p.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
		return pod{}, false
	}
	pp := pod{ns: p.GetMetadata().GetNamespace(), labels: p.GetMetadata().GetLabels(), ip: ip,
		local: p.GetSpec().GetNodeName() == node, ports: map[string][]Tuple{}}
	for _, ctr := range p.GetSpec().GetContainers() {
		for _, cp := range ctr.GetPorts() {
			if cp.GetName() == "" {
				continue
			}
			proto := ProtoTCP
			if n, ok := protoNumbers[cp.GetProtocol()]; ok {
				proto = n
			}
			pp.ports[cp.GetName()] = append(pp.ports[cp.GetName()], Tuple{Addr: ip, Proto: proto, Port: uint16(cp.GetContainerPort())})
		}
	}
	return pp, true
}

type compiler struct {
	m        *Model
	pods     []pod
	nsLabels map[string]map[string]string
}

func (c *compiler) policy(np *apiv1.NetworkPolicy, inIso, egIso map[netip.Addr]bool) {
	ns := np.GetMetadata().GetNamespace()
	spec := np.GetSpec()
	var targets []pod
	for _, p := range c.pods {
		if p.local && p.ns == ns && selects(spec.GetPodSelector(), p.labels, true) {
			targets = append(targets, p)
		}
	}
	h := fnv.New32a()
	h.Write([]byte(ns + "/" + np.GetMetadata().GetName()))
	prefix := fmt.Sprintf("p%08x", h.Sum32())
	local := prefix + "-tgt"
	c.addrSet(local, targets)
	types := spec.GetPolicyTypes()
	if len(types) == 0 { // stored before defaulting: Kubernetes' default
		types = []string{string(Ingress)}
		if len(spec.GetEgress()) > 0 {
			types = append(types, string(Egress))
		}
	}
	for _, t := range types {
		switch Direction(t) {
		case Ingress:
			for _, p := range targets {
				inIso[p.ip] = true
			}
			for i, r := range spec.GetIngress() {
				c.rule(Ingress, fmt.Sprintf("%s-i%d", prefix, i), local, ns, targets, r.GetFrom(), r.GetPorts())
			}
		case Egress:
			for _, p := range targets {
				egIso[p.ip] = true
			}
			for i, r := range spec.GetEgress() {
				c.rule(Egress, fmt.Sprintf("%s-e%d", prefix, i), local, ns, targets, r.GetTo(), r.GetPorts())
			}
		}
	}
}

// rule adds the rules of one ingress or egress rule: one per port entry
// (or one for all ports).
func (c *compiler) rule(dir Direction, name, local, ns string, targets []pod, peers []*apiv1.NetworkPolicyPeer, ports []*apiv1.NetworkPolicyPort) {
	peerSet := ""
	var peerPods []pod
	if len(peers) > 0 {
		peerSet = name + "-peer"
		var ranges []AddrRange
		seen := map[netip.Addr]bool{}
		for _, peer := range peers {
			if b := peer.GetIpBlock(); b != nil {
				ranges = append(ranges, blockRanges(b)...)
				continue
			}
			nsOK := c.peerNamespaces(peer, ns)
			for _, p := range c.pods {
				if !seen[p.ip] && nsOK[p.ns] && (peer.GetPodSelector() == nil || selects(peer.GetPodSelector(), p.labels, false)) {
					seen[p.ip] = true
					peerPods = append(peerPods, p)
					ranges = append(ranges, AddrRange{p.ip, p.ip})
				}
			}
		}
		c.m.Sets = append(c.m.Sets, Set{Name: peerSet, Kind: RangeSet, Ranges: mergeRanges(ranges)})
	} else {
		peerPods = c.pods // any destination: a named port resolves on any pod
	}
	if len(ports) == 0 {
		c.m.Rules = append(c.m.Rules, Rule{Dir: dir, Local: local, Peer: peerSet})
		return
	}
	for k, pt := range ports {
		proto := ProtoTCP
		if n, ok := protoNumbers[pt.GetProtocol()]; ok {
			proto = n
		}
		r := Rule{Dir: dir, Local: local, Peer: peerSet, Proto: proto}
		switch n, err := strconv.Atoi(pt.GetPort()); {
		case pt.Port == nil:
		case err == nil:
			r.PortFirst, r.PortLast = uint16(n), uint16(n)
			if pt.EndPort != nil && pt.GetEndPort() >= int32(n) {
				r.PortLast = uint16(pt.GetEndPort())
			}
		default:
			// A named port resolves on the destination: the target pods for
			// ingress, the peer pods for egress.
			on := targets
			if dir == Egress {
				on = peerPods
			}
			r.Named = fmt.Sprintf("%s-n%d", name, k)
			var tuples []Tuple
			for _, p := range on {
				for _, t := range p.ports[pt.GetPort()] {
					if t.Proto == proto {
						tuples = append(tuples, t)
					}
				}
			}
			c.m.Sets = append(c.m.Sets, Set{Name: r.Named, Kind: TupleSet, Tuples: sortTuples(tuples)})
		}
		c.m.Rules = append(c.m.Rules, r)
	}
}

// peerNamespaces is the set of namespaces a peer's pods may be in: the
// policy's own without a namespaceSelector, else those it selects.
func (c *compiler) peerNamespaces(peer *apiv1.NetworkPolicyPeer, policyNS string) map[string]bool {
	if peer.GetNamespaceSelector() == nil {
		return map[string]bool{policyNS: true}
	}
	out := map[string]bool{}
	for ns, labels := range c.nsLabels {
		if selects(peer.GetNamespaceSelector(), labels, false) {
			out[ns] = true
		}
	}
	return out
}

func (c *compiler) addrSet(name string, pods []pod) {
	seen := map[netip.Addr]bool{}
	for _, p := range pods {
		seen[p.ip] = true
	}
	c.m.Sets = append(c.m.Sets, Set{Name: name, Kind: AddrSet, Addrs: sortedAddrs(seen)})
}

// selects reports whether sel matches labels; nil matches all when
// nilMatchesAll (a policy's podSelector), else nothing.
func selects(sel *apiv1.LabelSelector, labels map[string]string, nilMatchesAll bool) bool {
	if sel == nil {
		return nilMatchesAll
	}
	for k, v := range sel.GetMatchLabels() {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range sel.GetMatchExpressions() {
		got, ok := labels[r.GetKey()]
		in := ok && slices.Contains(r.GetValues(), got)
		switch r.GetOperator() {
		case "In":
			if !in {
				return false
			}
		case "NotIn":
			if in {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			return false // unknown operators select nothing (validation refuses them)
		}
	}
	return true
}

// blockRanges is an ipBlock's cidr without its excepts, as disjoint
// ranges; IPv6 blocks (the pod network is IPv4) and bad CIDRs give none.
func blockRanges(b *apiv1.IPBlock) []AddrRange {
	cidr, err := netip.ParsePrefix(b.GetCidr())
	if err != nil || !cidr.Addr().Is4() {
		return nil
	}
	out := []AddrRange{prefixRange(cidr)}
	for _, e := range b.GetExcept() {
		ex, err := netip.ParsePrefix(e)
		if err != nil || !ex.Addr().Is4() {
			continue
		}
		out = subtract(out, prefixRange(ex))
	}
	return out
}

func prefixRange(p netip.Prefix) AddrRange {
	p = p.Masked()
	a := p.Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	last := n | (uint32(1)<<(32-p.Bits()) - 1)
	if p.Bits() == 0 {
		last = ^uint32(0)
	}
	return AddrRange{p.Addr(), u32Addr(last)}
}

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32Addr(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func subtract(rs []AddrRange, ex AddrRange) []AddrRange {
	var out []AddrRange
	ef, el := addrU32(ex.First), addrU32(ex.Last)
	for _, r := range rs {
		f, l := addrU32(r.First), addrU32(r.Last)
		if el < f || ef > l {
			out = append(out, r)
			continue
		}
		if ef > f {
			out = append(out, AddrRange{r.First, u32Addr(ef - 1)})
		}
		if el < l {
			out = append(out, AddrRange{u32Addr(el + 1), r.Last})
		}
	}
	return out
}

// mergeRanges sorts and joins overlapping or adjacent ranges (an interval
// set refuses overlaps).
func mergeRanges(rs []AddrRange) []AddrRange {
	slices.SortFunc(rs, func(a, b AddrRange) int { return a.First.Compare(b.First) })
	var out []AddrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := addrU32(out[n-1].Last)
			if last == ^uint32(0) || addrU32(r.First) <= last+1 {
				if r.Last.Compare(out[n-1].Last) > 0 {
					out[n-1].Last = r.Last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func sortedAddrs(m map[netip.Addr]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func sortTuples(ts []Tuple) []Tuple {
	slices.SortFunc(ts, func(a, b Tuple) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Port) - int(b.Port)
	})
	return slices.Compact(ts)
}
