package netproxy

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// chainBuilder writes the rules of a chain the batch has just added.
type chainBuilder func(*nftables.Conn, *nftables.Chain)

type nftChain struct {
	name  string
	build chainBuilder
	rules int
}

// nftElem is one element of a fixed set or map: key -> value (chain name
// for verdict maps, data bytes for data maps, "" for plain sets).
type nftElem struct{ set, key, val string }

// svcObjects is what one service port puts into the table. Shared objects
// are those several service ports may need at once (the round-robin chain
// for a given endpoint count and its vmap element; the hairpin element of an
// endpoint that backs several services): they are reference-counted and
// leave the kernel with their last user.
type svcObjects struct {
	chains       []nftChain
	sets         []string // affinity sets
	elems        []nftElem
	sharedChains []nftChain
	sharedElems  []nftElem
	// udpFlows are (ClusterIP, endpoint) pairs whose stale conntrack entries
	// must go when the endpoint disappears (see deleteStaleUDP).
	udpFlows [][2]netip.Addr
}

// nftObjects is a picture of the service-dependent part of the table.
type nftObjects struct {
	chains map[string]chainBuilder // name -> rule builder (nil when read from the kernel)
	sets   map[string]bool         // affinity sets; also stale sets of older versions (have only)
	// elems holds the elements of each fixed set or map: key -> value.
	elems    map[string]map[string]string
	udpFlows map[[2]netip.Addr]bool
	rules    int
}

func newNFTObjects() *nftObjects {
	o := &nftObjects{chains: map[string]chainBuilder{}, sets: map[string]bool{},
		elems: map[string]map[string]string{}, udpFlows: map[[2]netip.Addr]bool{}}
	for _, name := range fixedSetNames() {
		o.elems[name] = map[string]string{}
	}
	return o
}

func (o *nftObjects) addChain(c nftChain) {
	if _, ok := o.chains[c.name]; !ok {
		o.chains[c.name] = c.build
		o.rules += c.rules
	}
}

func (o *nftObjects) addElem(e nftElem) {
	m := o.elems[e.set]
	if _, ok := m[e.key]; !ok {
		o.rules++
	}
	m[e.key] = e.val
}

// addOwn adds the objects only this service port uses.
func (o *nftObjects) addOwn(s *svcObjects) {
	for _, c := range s.chains {
		o.addChain(c)
	}
	for _, name := range s.sets {
		o.sets[name] = true
	}
	for _, e := range s.elems {
		o.addElem(e)
	}
	for _, f := range s.udpFlows {
		o.udpFlows[f] = true
	}
}

// Names of the fixed objects in the nftables backend's table.
const (
	nftServicesChain = "services"
	// Services without session affinity: no chain of their own.
	nftSvcRR      = "svc-rr"        // ip . proto . port : count . id
	nftNodePortRR = "nodeport-rr"   // proto . nodePort : count . id
	nftRRChains   = "rr-chains"     // count . shard : goto n-<count>-<shard>
	nftNPChains   = "np-chains"     // count . shard : goto p-<count>-<shard>
	nftEndpoints  = "svc-endpoints" // + shard suffix
	// Services with session affinity: a chain each.
	nftSvcIPsMap     = "svc-ips"
	nftSvcNodePorts  = "svc-nodeports"
	nftAffinity      = "svc-affinity" // + shard suffix
	nftNoEPIPs       = "no-ep-ips"
	nftNoEPNodePorts = "no-ep-nodeports"
	nftLoopback      = "loopback" // + shard suffix
	// Hairpin: postrouting jumps by the destination's last address bits.
	nftHairpinShards = "hairpin-shards" // 0.0.0.<shard> : jump hairpin-<shard>
	nftHairpinChain  = "hairpin"        // + shard suffix
)

// Registers holding the svc-rr value (count . id) and the numgen index,
// away from reg0..reg2 where the service tuple is loaded. The endpoint key
// id . index is then regID..regIndex, three consecutive registers.
const (
	regCount = unix.NFT_REG32_04
	regID    = unix.NFT_REG32_05 // and NFT_REG32_06
	regIndex = unix.NFT_REG32_07
)

// elemShards splits the two large sets, endpoints and hairpin (one element
// per endpoint each). Reading a set back costs elements × dump chunks in
// the kernel (nft_rhash_walk rewalks the set for every chunk), so one set of
// 100,000 elements took ~0.8 s to read in a periodic resync; 16 take 1/16 of
// that walk. A power of two: the hairpin shard is `ip daddr & 0.0.0.15`.
const elemShards = 16

// endpointShard picks a service's endpoints map.
func endpointShard(id [8]byte) int { return int(id[1]) % elemShards }

// hairpinShard picks an endpoint's hairpin set: its address' low bits, which
// postrouting can compute from the packet.
func hairpinShard(ep netip.AddrPort) int { return int(ep.Addr().As4()[3]) % elemShards }

// Shard set names, computed once: objectsFor names one per endpoint.
var endpointsMapNames, loopbackSetNames = shardNames(nftEndpoints), shardNames(nftLoopback)

func shardNames(prefix string) (out [elemShards]string) {
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}

func endpointsMap(shard int) string { return endpointsMapNames[shard] }

func loopbackSet(shard int) string { return loopbackSetNames[shard] }

func hairpinChain(shard int) string { return fmt.Sprintf("%s-%02d", nftHairpinChain, shard) }

// affinityShards splits the affinity verdict maps. The kernel checks every
// new map element against every rule bound to the map (nft_add_set_elem
// walks set->bindings), and each affinity service has a chain with its own
// lookup; shards keep that walk short. Round-robin services need no shards:
// their endpoint map is bound only by the few shared count chains.
const affinityShards = 64

func shardOf(id [8]byte) int { return int(id[0]) % affinityShards }

func affinityMap(shard int) string { return fmt.Sprintf("%s-%02d", nftAffinity, shard) }

// fixedSetNames are the sets whose elements change with Services.
func fixedSetNames() []string {
	names := []string{nftRRChains, nftNPChains, nftSvcRR, nftNodePortRR,
		nftSvcIPsMap, nftSvcNodePorts, nftNoEPIPs, nftNoEPNodePorts}
	for i := 0; i < elemShards; i++ {
		names = append(names, endpointsMap(i), loopbackSet(i))
	}
	for i := 0; i < affinityShards; i++ {
		names = append(names, affinityMap(i))
	}
	return names
}

// objectsFor computes the table objects of one service port.
//
// Round robin without affinity takes no chain per service: svc-rr maps the
// service tuple to its endpoint count, endpoint map shard and id; rr-chains
// sends the packet to the one chain shared by all services with that count
// and shard, and that chain does `dnat to id . numgen inc mod count map
// @svc-endpoints-<shard>`. Creating a chain per service cost ~1.5 s at
// 10,000 services; elements are far cheaper. (numgen's modulus is fixed in
// the expression, hence a chain per count.)
//
// No anonymous sets: the kernel allocates their names by scanning every set
// of the table (quadratic at 10,000 services).
func (b *nftBackend) objectsFor(sp *servicePortState) *svcObjects {
	o := &svcObjects{}
	mark := b.cfg.MasqueradeMark
	id := serviceID(sp.ID)
	proto := sp.Port.Protocol
	if proto == UDP {
		for _, vip := range sp.ClusterIPs {
			for _, ep := range slices.Concat(sp.Ready, sp.Terminating) {
				o.udpFlows = append(o.udpFlows, [2]netip.Addr{vip, ep.Addr()})
			}
		}
	}
	if len(sp.Ready) == 0 {
		for _, vip := range sp.ClusterIPs {
			o.elems = append(o.elems, nftElem{nftNoEPIPs, string(serviceKey(vip, proto, sp.Port.Port)), ""})
		}
		if sp.Port.NodePort != 0 {
			o.elems = append(o.elems, nftElem{nftNoEPNodePorts, string(nodePortKey(proto, sp.Port.NodePort)), ""})
		}
		return o
	}
	eps := sp.Ready
	o.elems = make([]nftElem, 0, len(eps)+len(sp.ClusterIPs)+1)
	o.sharedElems = make([]nftElem, 0, len(eps)+2)
	for _, ep := range eps {
		// hairpin: an endpoint sent to itself must be SNATed, or it sees
		// a packet from its own address and drops it
		o.sharedElems = append(o.sharedElems, nftElem{loopbackSet(hairpinShard(ep)), string(loopbackKey(ep)), ""})
	}
	if sp.Affinity == 0 {
		n, shard := len(eps), endpointShard(id)
		for i, ep := range eps {
			o.elems = append(o.elems, nftElem{endpointsMap(shard), string(endpointKey(id, i)), string(endpointValue(ep))})
		}
		val := string(rrValue(n, shard, id))
		for _, vip := range sp.ClusterIPs {
			o.elems = append(o.elems, nftElem{nftSvcRR, string(serviceKey(vip, proto, sp.Port.Port)), val})
		}
		rr := b.countChain(false, n, shard)
		o.sharedChains = append(o.sharedChains, rr)
		o.sharedElems = append(o.sharedElems, nftElem{nftRRChains, string(countKey(n, shard)), rr.name})
		if sp.Port.NodePort != 0 {
			np := b.countChain(true, n, shard)
			o.sharedChains = append(o.sharedChains, np)
			o.sharedElems = append(o.sharedElems, nftElem{nftNPChains, string(countKey(n, shard)), np.name})
			o.elems = append(o.elems, nftElem{nftNodePortRR, string(nodePortKey(proto, sp.Port.NodePort)), val})
		}
		return o
	}
	// Session affinity: per endpoint a timed set of the clients it serves
	// and a chain that refreshes the client there, then DNATs.
	sid := shortHash(12, sp.ID)
	var epChains, affSets []string
	for i, ep := range eps {
		set := "a-" + sid + "-" + shortHash(8, ep)
		chain := "e-" + sid + "-" + shortHash(8, nftVersion, ep, set, sp.Affinity)
		o.sets = append(o.sets, set)
		epChains = append(epChains, chain)
		affSets = append(affSets, set)
		o.elems = append(o.elems, nftElem{affinityMap(shardOf(id)), string(endpointKey(id, i)), chain})
		timeout := sp.Affinity
		target := ep
		o.chains = append(o.chains, nftChain{name: chain, rules: 2, build: func(c *nftables.Conn, ch *nftables.Chain) {
			c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: []expr.Any{
				loadSaddr(reg0),
				&expr.Dynset{SrcRegKey: reg0, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: timeout},
			}})
			c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: dnatTo(target)})
		}})
	}
	content := shortHash(8, nftVersion, mark, b.cfg.ClusterCIDR, len(eps), sp.Affinity, epChains)
	sChain := "s-" + sid + "-" + content
	o.chains = append(o.chains, nftChain{name: sChain, rules: 3 + len(epChains),
		build: b.affinityChainBuilder(id, len(eps), epChains, affSets)})
	for _, vip := range sp.ClusterIPs {
		o.elems = append(o.elems, nftElem{nftSvcIPsMap, string(serviceKey(vip, proto, sp.Port.Port)), sChain})
	}
	if sp.Port.NodePort != 0 {
		xChain := "x-" + sid + "-" + shortHash(8, nftVersion, sChain)
		o.chains = append(o.chains, nftChain{name: xChain, rules: 1, build: func(c *nftables.Conn, ch *nftables.Chain) {
			// Off-node clients reach a NodePort: their replies must come
			// back through this node, so always masquerade.
			c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: append(setMark(mark), gotoChain(sChain))})
		}})
		o.elems = append(o.elems, nftElem{nftSvcNodePorts, string(nodePortKey(proto, sp.Port.NodePort)), xChain})
	}
	return o
}

// serviceID is a service port's 64-bit key in svc-endpoints/svc-affinity.
func serviceID(id string) [8]byte {
	h := sha256.Sum256([]byte(id))
	return [8]byte(h[:8])
}

// endpointKey is id . index (the index as numgen writes it: host order).
func endpointKey(id [8]byte, i int) []byte {
	return append(id[:], binaryutil.NativeEndian.PutUint32(uint32(i))...)
}

// countKey is the rr-chains/np-chains key: endpoint count and endpoints
// map shard in one 32-bit word (shard in the top byte).
func countKey(n, shard int) []byte {
	return binaryutil.NativeEndian.PutUint32(uint32(shard)<<24 | uint32(n)&0xffffff)
}

// rrValue is the svc-rr/nodeport-rr data: count key . id.
func rrValue(n, shard int, id [8]byte) []byte { return append(countKey(n, shard), id[:]...) }

// countChain is the round-robin chain shared by every service with n ready
// endpoints (nodePort: reached through a NodePort). Its name carries what
// its rules depend on, so a config change makes new chains.
//
// The chain looks the service up again instead of relying on the registers
// the services chain filled before `goto`: the kernel does keep registers
// across a goto, but nothing documents that, and a hash lookup per new
// connection is cheap.
func (b *nftBackend) countChain(nodePort bool, n, shard int) nftChain {
	key := countChainKey{nodePort, n, shard}
	if c, ok := b.countChains[key]; ok {
		return c
	}
	c := b.newCountChain(nodePort, n, shard)
	b.countChains[key] = c
	return c
}

type countChainKey struct {
	nodePort bool
	n, shard int
}

func (b *nftBackend) newCountChain(nodePort bool, n, shard int) nftChain {
	mark, cidr := b.cfg.MasqueradeMark, b.cfg.ClusterCIDR
	kind, rules := "n", 3
	if nodePort {
		kind, rules = "p", 2
	}
	name := fmt.Sprintf("%s-%d-%02d-%s", kind, n, shard, shortHash(8, nftVersion, mark, cidr, nodePort))
	pick := func(lookup []expr.Any) []expr.Any {
		return append(lookup,
			&expr.Numgen{Register: regIndex, Modulus: uint32(n), Type: unix.NFT_NG_INCREMENTAL},
			&expr.Lookup{SourceRegister: regID, DestRegister: reg0, IsDestRegSet: true, SetName: endpointsMap(shard)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg0, RegProtoMin: reg1, Specified: true})
	}
	build := func(c *nftables.Conn, ch *nftables.Chain) {
		add := func(e ...expr.Any) { c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: e}) }
		if nodePort {
			// Off-node clients reach a NodePort: their replies must come
			// back through this node, so always masquerade.
			add(setMark(mark)...)
			add(pick(append(loadNodePortTuple(), &expr.Lookup{SourceRegister: reg0, DestRegister: regCount, IsDestRegSet: true, SetName: nftNodePortRR}))...)
			return
		}
		b.addClusterIPMarks(add)
		add(pick(append(loadServiceTuple(), &expr.Lookup{SourceRegister: reg0, DestRegister: regCount, IsDestRegSet: true, SetName: nftSvcRR}))...)
	}
	if !cidr.IsValid() && !nodePort {
		rules--
	}
	return nftChain{name: name, build: build, rules: rules}
}

// addClusterIPMarks adds the masquerade-mark rules every ClusterIP
// connection passes.
func (b *nftBackend) addClusterIPMarks(add func(...expr.Any)) {
	mark, cidr := b.cfg.MasqueradeMark, b.cfg.ClusterCIDR
	// Clients outside the cluster network (other hosts) are masqueraded so
	// the endpoint's reply returns through this node to be un-DNATed.
	if cidr.IsValid() {
		add(slices.Concat(saddrOutside(cidr), setMark(mark))...)
	}
	// Traffic this node originates (output hook) carries a node address.
	add(slices.Concat(fibLocal(true), setMark(mark))...)
}

// affinityChainBuilder writes an s-chain: masquerade marks, the client's
// remembered endpoint if any, else round robin over the e-chains:
// `goto id . numgen inc mod n map @svc-affinity-<shard>`.
func (b *nftBackend) affinityChainBuilder(id [8]byte, n int, epChains, affSets []string) chainBuilder {
	return func(c *nftables.Conn, ch *nftables.Chain) {
		add := func(e ...expr.Any) { c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: e}) }
		b.addClusterIPMarks(add)
		for i, set := range affSets {
			add(loadSaddr(reg0), &expr.Lookup{SourceRegister: reg0, SetName: set}, gotoChain(epChains[i]))
		}
		add(&expr.Immediate{Register: reg0, Data: slices.Clone(id[:4])},
			&expr.Immediate{Register: reg1, Data: slices.Clone(id[4:])},
			&expr.Numgen{Register: reg2, Modulus: uint32(n), Type: unix.NFT_NG_INCREMENTAL},
			&expr.Lookup{SourceRegister: reg0, DestRegister: 0, IsDestRegSet: true, SetName: affinityMap(shardOf(id))})
	}
}

func dnatTo(ep netip.AddrPort) []expr.Any {
	a := ep.Addr().As4()
	return []expr.Any{
		&expr.Immediate{Register: reg0, Data: a[:]},
		&expr.Immediate{Register: reg1, Data: binaryutil.BigEndian.PutUint16(ep.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg0, RegProtoMin: reg1, Specified: true},
	}
}

// setDefs are the fixed sets and maps of the table, in the order their
// elements are written: what an element points at is written before it,
// so that when a large change spans several batches nothing points at a
// missing endpoint or chain element.
func (b *nftBackend) setDefs() []*nftables.Set {
	idKey, _ := nftables.ConcatSetType(nftables.TypeInteger, nftables.TypeInteger, nftables.TypeInteger)
	rrData := idKey // count . id
	var defs []*nftables.Set
	for i := 0; i < elemShards; i++ {
		defs = append(defs, &nftables.Set{Table: b.table, Name: endpointsMap(i), IsMap: true, Concatenation: true, KeyType: idKey, DataType: endpointType})
	}
	defs = append(defs, []*nftables.Set{
		{Table: b.table, Name: nftRRChains, IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict},
		{Table: b.table, Name: nftNPChains, IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict},
		{Table: b.table, Name: nftSvcRR, IsMap: true, Concatenation: true, KeyType: serviceKeyType, DataType: rrData},
		{Table: b.table, Name: nftNodePortRR, IsMap: true, Concatenation: true, KeyType: nodePortKeyType, DataType: rrData},
	}...)
	for i := 0; i < affinityShards; i++ {
		defs = append(defs,
			&nftables.Set{Table: b.table, Name: affinityMap(i), IsMap: true, Concatenation: true, KeyType: idKey, DataType: nftables.TypeVerdict})
	}
	defs = append(defs, []*nftables.Set{
		{Table: b.table, Name: nftSvcIPsMap, IsMap: true, Concatenation: true, KeyType: serviceKeyType, DataType: nftables.TypeVerdict},
		{Table: b.table, Name: nftSvcNodePorts, IsMap: true, Concatenation: true, KeyType: nodePortKeyType, DataType: nftables.TypeVerdict},
		{Table: b.table, Name: nftNoEPIPs, Concatenation: true, KeyType: serviceKeyType},
		{Table: b.table, Name: nftNoEPNodePorts, Concatenation: true, KeyType: nodePortKeyType},
	}...)
	for i := 0; i < elemShards; i++ {
		defs = append(defs, &nftables.Set{Table: b.table, Name: loopbackSet(i), Concatenation: true, KeyType: loopbackKeyType})
	}
	return defs
}

// hairpinDispatch is the fixed vmap postrouting looks the hairpin shard up
// in, and its elements (written by ensureBase, never by a sync).
func (b *nftBackend) hairpinDispatch() (*nftables.Set, []nftables.SetElement) {
	set := &nftables.Set{Table: b.table, Name: nftHairpinShards, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	var elems []nftables.SetElement
	for i := 0; i < elemShards; i++ {
		elems = append(elems, nftables.SetElement{Key: []byte{0, 0, 0, byte(i)},
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: hairpinChain(i)}})
	}
	return set, elems
}

type baseChain struct {
	chain *nftables.Chain
	rules [][]expr.Any
}

func (b *nftBackend) baseChains() []baseChain {
	prio := func(p int32) *nftables.ChainPriority { v := nftables.ChainPriority(p); return &v }
	rejectNoEP := slices.Concat(loadServiceTuple(), []expr.Any{&expr.Lookup{SourceRegister: reg0, SetName: nftNoEPIPs},
		&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* port unreachable */}})
	rejectNoEPPort := slices.Concat(loadNodePortTuple(), []expr.Any{&expr.Lookup{SourceRegister: reg0, SetName: nftNoEPNodePorts},
		&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}})
	mark := b.cfg.MasqueradeMark
	toNodePort := slices.Concat(fibLocal(false), daddrNotLoopback(), loadNodePortTuple())
	// hairpin: an endpoint sent to itself must be SNATed, or it sees a
	// packet from its own address and drops it
	var hairpin []baseChain
	for i := 0; i < elemShards; i++ {
		hairpin = append(hairpin, baseChain{&nftables.Chain{Name: hairpinChain(i), Table: b.table}, [][]expr.Any{
			{loadDaddr(reg0), loadDport(reg1), loadSaddr(reg2),
				&expr.Lookup{SourceRegister: reg0, SetName: loopbackSet(i)}, &expr.Masq{}}}})
	}
	return append(hairpin, []baseChain{
		{&nftables.Chain{Name: nftServicesChain, Table: b.table}, [][]expr.Any{
			// round robin: the count of ready endpoints picks the chain
			slices.Concat(loadServiceTuple(), []expr.Any{
				&expr.Lookup{SourceRegister: reg0, DestRegister: regCount, IsDestRegSet: true, SetName: nftSvcRR},
				&expr.Lookup{SourceRegister: regCount, DestRegister: 0, IsDestRegSet: true, SetName: nftRRChains}}),
			slices.Concat(loadServiceTuple(), []expr.Any{&expr.Lookup{SourceRegister: reg0, DestRegister: 0, IsDestRegSet: true, SetName: nftSvcIPsMap}}),
			slices.Concat(toNodePort, []expr.Any{
				&expr.Lookup{SourceRegister: reg0, DestRegister: regCount, IsDestRegSet: true, SetName: nftNodePortRR},
				&expr.Lookup{SourceRegister: regCount, DestRegister: 0, IsDestRegSet: true, SetName: nftNPChains}}),
			slices.Concat(toNodePort, []expr.Any{&expr.Lookup{SourceRegister: reg0, DestRegister: 0, IsDestRegSet: true, SetName: nftSvcNodePorts}}),
		}},
		// Priority -100 (dstnat) in both hooks: output is where locally
		// originated traffic must be DNATed, prerouting the rest.
		{&nftables.Chain{Name: "nat-prerouting", Table: b.table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: prio(-100)}, [][]expr.Any{{jumpChain(nftServicesChain)}}},
		{&nftables.Chain{Name: "nat-output", Table: b.table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: prio(-100)}, [][]expr.Any{{jumpChain(nftServicesChain)}}},
		{&nftables.Chain{Name: "nat-postrouting", Table: b.table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: prio(100)}, [][]expr.Any{
			{loadDaddr(reg0),
				&expr.Bitwise{SourceRegister: reg0, DestRegister: reg0, Len: 4, Mask: []byte{0, 0, 0, elemShards - 1}, Xor: make([]byte, 4)},
				&expr.Lookup{SourceRegister: reg0, DestRegister: 0, IsDestRegSet: true, SetName: nftHairpinShards}},
			append(markMatches(mark, true), &expr.Verdict{Kind: expr.VerdictReturn}),
			slices.Concat(clearMark(mark), []expr.Any{&expr.Masq{}}),
		}},
		// Services without ready endpoints: refuse at once (ICMP port
		// unreachable) instead of letting the packet follow the default
		// route off the node. Prerouting covers forwarded and NodePort
		// traffic (reject there needs Linux 5.13+), output the node's own.
		{&nftables.Chain{Name: "filter-prerouting", Table: b.table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: prio(-10)}, [][]expr.Any{
			rejectNoEP, slices.Concat(fibLocal(false), rejectNoEPPort)}},
		{&nftables.Chain{Name: "filter-output", Table: b.table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: prio(-10)}, [][]expr.Any{
			rejectNoEP, slices.Concat(fibLocal(false), daddrNotLoopback(), rejectNoEPPort)}},
	}...)
}

func clearMark(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg0},
		&expr.Bitwise{SourceRegister: reg0, DestRegister: reg0, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bits), Xor: make([]byte, 4)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg0},
	}
}
