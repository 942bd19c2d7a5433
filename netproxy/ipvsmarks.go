package netproxy

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
)

// Sets of the IPVS backend's nftables table.
const (
	markClusterIPs = "cluster-ips" // ip . proto . port of ClusterIP services
	markNodePorts  = "node-ports"  // node ip . proto . nodePort
	markLoopback   = "loopback"    // endpoint ip . port . endpoint ip (hairpin)
)

// markSets is the desired content of the three sets (keys as strings).
type markSets struct {
	clusterIPs, nodePorts, loopback map[string]bool
}

func newMarkSets() *markSets {
	return &markSets{clusterIPs: map[string]bool{}, nodePorts: map[string]bool{}, loopback: map[string]bool{}}
}

func loopbackKey(ep netip.AddrPort) []byte {
	b := make([]byte, 12)
	a := ep.Addr().As4()
	copy(b, a[:])
	binary.BigEndian.PutUint16(b[4:], ep.Port())
	copy(b[8:], a[:])
	return b
}

// ipvsMarks owns the nftables rules IPVS still needs: IPVS rewrites the
// destination but never the source, so masquerade for off-node clients,
// NodePorts, node-local clients and hairpin is done by netfilter (which sees
// IPVS connections because net.ipv4.vs.conntrack=1). The rules are fixed;
// only set elements change with Services.
type ipvsMarks struct {
	cfg   Config
	log   *slog.Logger
	conn  *nftables.Conn
	table *nftables.Table
	known *markSets
	dump  *setDumper
}

func newIPVSMarks(cfg Config, ns netns.NsHandle, log *slog.Logger) (*ipvsMarks, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.AsLasting(), nftables.WithSockOptions(bigSocketBuffers))
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return &ipvsMarks{cfg: cfg, log: log, conn: conn, dump: &setDumper{ns: ns},
		table: &nftables.Table{Family: nftables.TableFamilyIPv4, Name: cfg.NFTTable}}, nil
}

func (m *ipvsMarks) close() error {
	m.dump.close()
	return m.conn.CloseLasting()
}

func (m *ipvsMarks) cleanup() error {
	if _, err := m.conn.ListTableOfFamily(m.table.Name, m.table.Family); err != nil {
		return nil
	}
	m.conn.DelTable(m.table)
	m.known = nil
	return m.conn.Flush()
}

func (m *ipvsMarks) sets() (clusterIPs, nodePorts, loopback *nftables.Set) {
	clusterIPs = &nftables.Set{Table: m.table, Name: markClusterIPs, Concatenation: true, KeyType: serviceKeyType}
	nodePorts = &nftables.Set{Table: m.table, Name: markNodePorts, Concatenation: true, KeyType: serviceKeyType}
	loopback = &nftables.Set{Table: m.table, Name: markLoopback, Concatenation: true, KeyType: loopbackKeyType}
	return
}

func (m *ipvsMarks) baseChains() []baseChain {
	prio := func(p int32) *nftables.ChainPriority { v := nftables.ChainPriority(p); return &v }
	mark := m.cfg.MasqueradeMark
	inSet := func(set string) []expr.Any {
		return append(loadServiceTuple(), &expr.Lookup{SourceRegister: reg0, SetName: set})
	}
	var pre [][]expr.Any
	if m.cfg.ClusterCIDR.IsValid() {
		pre = append(pre, slices.Concat(inSet(markClusterIPs), saddrOutside(m.cfg.ClusterCIDR), setMark(mark)))
	}
	pre = append(pre, slices.Concat(inSet(markNodePorts), setMark(mark)))
	return []baseChain{
		// -100 runs before IPVS (LOCAL_IN at 98, LOCAL_OUT at -99).
		{&nftables.Chain{Name: "nat-prerouting", Table: m.table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: prio(-100)}, pre},
		// Node-originated connections to a ClusterIP use the ClusterIP
		// itself as source (it is local): always masquerade them.
		{&nftables.Chain{Name: "nat-output", Table: m.table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: prio(-100)}, [][]expr.Any{
			slices.Concat(inSet(markClusterIPs), setMark(mark)),
			slices.Concat(inSet(markNodePorts), setMark(mark)),
		}},
		{&nftables.Chain{Name: "nat-postrouting", Table: m.table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: prio(100)}, [][]expr.Any{
			// hairpin: IPVS sent an endpoint's connection to itself
			{loadDaddr(reg0), loadDport(reg1), loadSaddr(reg2),
				&expr.Lookup{SourceRegister: reg0, SetName: markLoopback}, &expr.Masq{}},
			append(markMatches(mark, true), &expr.Verdict{Kind: expr.VerdictReturn}),
			slices.Concat(clearMark(mark), []expr.Any{&expr.Masq{}}),
		}},
	}
}

func (m *ipvsMarks) ensureBase() error {
	c := m.conn
	c.AddTable(m.table)
	a, b, d := m.sets()
	for _, s := range []*nftables.Set{a, b, d} {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("nftables: add set %s: %w", s.Name, err)
		}
	}
	bases := m.baseChains()
	for _, bc := range bases {
		c.AddChain(bc.chain)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: create table %s: %w", m.table.Name, err)
	}
	if err := rewriteBaseChains(c, m.table, bases, m.log); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: write base chains: %w", err)
	}
	return nil
}

func (m *ipvsMarks) read() (*markSets, error) {
	out := newMarkSets()
	a, b, d := m.sets()
	for _, x := range []struct {
		set *nftables.Set
		dst map[string]bool
	}{{a, out.clusterIPs}, {b, out.nodePorts}, {d, out.loopback}} {
		elems, err := m.dump.dumpElements(x.set)
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		for k := range elems {
			x.dst[k] = true
		}
	}
	return out, nil
}

func (m *ipvsMarks) sync(want *markSets, full bool) (int, error) {
	if full || m.known == nil {
		if err := m.ensureBase(); err != nil {
			m.known = nil
			return 0, err
		}
		have, err := m.read()
		if err != nil {
			m.known = nil
			return 0, err
		}
		m.known = have
	}
	n, err := m.apply(m.known, want)
	if err != nil {
		m.known = nil
		return n, err
	}
	m.known = want
	return n, nil
}

// change applies the difference between parts of the sets: have is what
// the changed services held, want what they hold now.
func (m *ipvsMarks) change(have, want *markSets) (int, error) {
	if m.known == nil {
		return 0, fmt.Errorf("nftables: mark sets changed before a full sync")
	}
	n, err := m.apply(have, want)
	if err != nil {
		m.known = nil
		return n, err
	}
	for _, x := range []struct{ known, have, want map[string]bool }{
		{m.known.clusterIPs, have.clusterIPs, want.clusterIPs},
		{m.known.nodePorts, have.nodePorts, want.nodePorts},
		{m.known.loopback, have.loopback, want.loopback}} {
		for k := range x.have {
			delete(x.known, k)
		}
		maps.Copy(x.known, x.want)
	}
	return n, nil
}

func (m *ipvsMarks) apply(have, want *markSets) (int, error) {
	a, b, d := m.sets()
	changed := 0
	eb := &elementBatcher{conn: m.conn}
	for _, x := range []struct {
		set        *nftables.Set
		have, want map[string]bool
	}{{a, have.clusterIPs, want.clusterIPs}, {b, have.nodePorts, want.nodePorts}, {d, have.loopback, want.loopback}} {
		var del, add []nftables.SetElement
		for k := range x.have {
			if !x.want[k] {
				del = append(del, nftables.SetElement{Key: []byte(k)})
			}
		}
		for k := range x.want {
			if !x.have[k] {
				add = append(add, nftables.SetElement{Key: []byte(k)})
			}
		}
		if err := eb.change(x.set, del, add); err != nil {
			return changed, err
		}
		changed += len(del) + len(add)
	}
	if err := eb.flush(); err != nil {
		return changed, fmt.Errorf("nftables: update sets: %w", err)
	}
	return changed, nil
}
