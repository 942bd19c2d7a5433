package netpol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TableName is the enforcer's own table (family inet); nothing else in
// Skiff writes to it.
const TableName = "skiff-netpol"

// Set names of the isolated local pods.
const (
	setIngressIsolated = "ingress-isolated"
	setEgressIsolated  = "egress-isolated"
)

// elementsPerMessage keeps one netlink message under the 16-bit length
// google/nftables overflows at about a thousand elements.
const elementsPerMessage = 256

// Registers: concatenated keys take consecutive 32-bit registers.
const (
	reg0 = unix.NFT_REG32_00
	reg1 = unix.NFT_REG32_01
	reg2 = unix.NFT_REG32_02
)

var tupleKeyType, _ = nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)

// Programmer writes Models into the table of one network namespace.
type Programmer struct {
	conn  *nftables.Conn
	table *nftables.Table
	ownNS netns.NsHandle // opened by OpenProgrammer
	// built: the table holds structure, the model's rules and sets, with
	// elems, each set's elements; so Apply changes only what differs.
	built     bool
	structure string
	elems     map[string]uint64
	rules     map[string]string // policy tag -> its rules, as programmed
	ingress   *nftables.Chain
	egress    *nftables.Chain
	sets      map[string]*nftables.Set
}

// NewProgrammer opens a netlink connection into ns.
func NewProgrammer(ns netns.NsHandle) (*Programmer, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.AsLasting(), nftables.WithSockOptions(bigSocketBuffers))
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return &Programmer{ownNS: netns.None(), conn: conn, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}}, nil
}

// OpenProgrammer is NewProgrammer for the namespace at path (the
// caller's own when empty); Close also closes the namespace handle.
func OpenProgrammer(path string) (*Programmer, error) {
	ns, err := netns.Get()
	if path != "" {
		ns, err = netns.GetFromPath(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open netns %q: %w", path, err)
	}
	p, err := NewProgrammer(ns)
	if err != nil {
		ns.Close()
		return nil, err
	}
	p.ownNS = ns
	return p, nil
}

// Close releases the connection; the table stays, so policies keep being
// enforced while the agent restarts.
func (p *Programmer) Close() error {
	err := p.conn.CloseLasting()
	if p.ownNS.IsOpen() {
		p.ownNS.Close()
	}
	return err
}

// Delete removes the table.
func (p *Programmer) Delete() error {
	p.conn.AddTable(p.table) // exists afterwards, so the delete cannot fail on absence
	p.conn.DelTable(p.table)
	p.built = false
	return p.conn.Flush()
}

// Apply programs m in one transaction: the whole table on the first call
// (or after a failure); later only what differs: new sets, changed sets'
// elements, and, when the rules changed, the rules of the ingress and
// egress chains (sets no rule uses any more go). It reports whether
// anything was written.
func (p *Programmer) Apply(m *Model) (bool, error) {
	want := map[string]uint64{}
	all := append([]Set{
		{Name: setIngressIsolated, Kind: AddrSet, Addrs: m.IngressIsolated},
		{Name: setEgressIsolated, Kind: AddrSet, Addrs: m.EgressIsolated},
	}, m.Sets...)
	for _, s := range all {
		want[s.Name] = s.fingerprint()
	}
	st := m.Structure()
	if !p.built {
		if err := p.rebuild(m, all); err != nil {
			return false, err
		}
		p.built, p.structure, p.elems = true, st, want
		return true, nil
	}
	wrote := false
	for _, s := range all {
		old, ok := p.elems[s.Name]
		switch {
		case !ok:
			if err := p.addSet(s); err != nil {
				return false, err
			}
		case old != want[s.Name]:
			p.conn.FlushSet(p.sets[s.Name])
			if err := p.addElements(p.sets[s.Name], s); err != nil {
				return false, err
			}
		default:
			continue
		}
		wrote = true
	}
	if st != p.structure {
		if err := p.replaceRules(m); err != nil {
			return false, err
		}
		for name := range p.elems {
			if _, ok := want[name]; !ok {
				p.conn.DelSet(p.sets[name])
				delete(p.sets, name)
			}
		}
		wrote = true
	}
	if !wrote {
		return false, nil
	}
	if err := p.conn.Flush(); err != nil {
		p.built = false // the next Apply rewrites everything
		return false, fmt.Errorf("update table inet %s: %w", TableName, err)
	}
	p.structure, p.elems = st, want
	return true, nil
}

func (p *Programmer) rebuild(m *Model, all []Set) error {
	c := p.conn
	c.AddTable(p.table)
	c.DelTable(p.table)
	c.AddTable(p.table)
	p.sets = map[string]*nftables.Set{}
	for _, s := range all {
		if err := p.addSet(s); err != nil {
			return err
		}
	}
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Table: p.table, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	p.ingress = c.AddChain(&nftables.Chain{Table: p.table, Name: "ingress"})
	p.egress = c.AddChain(&nftables.Chain{Table: p.table, Name: "egress"})
	// IPVS forwards a pod's connection to a ClusterIP without the forward
	// hook: the ClusterIP is a local address, so the packet goes to input,
	// where IPVS rewrites its destination and sends it out through the
	// output hook. Policing only forward would let a pod reach, through
	// the Service, a backend its egress policy denies (and reach a local
	// backend whose ingress policy denies it). So the same decisions also
	// run on output, after IPVS's rewrite (ip daddr is the backend), for
	// packets whose source is not this node's own: those are IPVS's.
	// (nftables DNAT happens at prerouting, before forward, so forward
	// already sees the backend.)
	out := c.AddChain(&nftables.Chain{Table: p.table, Name: "output", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, ch := range []*nftables.Chain{fwd, out} {
		add := func(exprs ...expr.Any) { c.AddRule(&nftables.Rule{Table: p.table, Chain: ch, Exprs: exprs}) }
		// Only IPv4 is policed (the pod network is IPv4); replies of allowed
		// connections pass; then egress at the source's node, ingress at the
		// destination's (each set holds only this node's pods).
		add(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}, &expr.Verdict{Kind: expr.VerdictAccept})
		if ch == out {
			// The node's own traffic (probes) is never filtered.
			add(&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryNative(unix.RTN_LOCAL)}, &expr.Verdict{Kind: expr.VerdictAccept})
		}
		add(&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryNative(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: binaryNative(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryNative(0)}, &expr.Verdict{Kind: expr.VerdictAccept})
		add(append(lookup(p.sets[setEgressIsolated], saddr(reg0)), &expr.Verdict{Kind: expr.VerdictJump, Chain: p.egress.Name})...)
		add(append(lookup(p.sets[setIngressIsolated], daddr(reg0)), &expr.Verdict{Kind: expr.VerdictJump, Chain: p.ingress.Name})...)
	}
	p.addRules(m)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write table inet %s: %w", TableName, err)
	}
	return nil
}

// addSet queues a new set with its elements.
func (p *Programmer) addSet(s Set) error {
	set := &nftables.Set{Table: p.table, Name: s.Name, KeyType: nftables.TypeIPAddr}
	switch s.Kind {
	case RangeSet:
		set.Interval = true
	case TupleSet:
		set.Concatenation, set.KeyType = true, tupleKeyType
	}
	if err := p.conn.AddSet(set, nil); err != nil {
		return fmt.Errorf("netpol set %s: %w", s.Name, err)
	}
	p.sets[s.Name] = set
	return p.addElements(set, s)
}

// addRules queues the model's allow rules into the (empty) ingress and
// egress chains, each ending in a drop.
func (p *Programmer) addRules(m *Model) {
	p.rules = map[string]string{}
	for policy, rules := range rulesByPolicy(m.Rules) {
		for _, r := range rules {
			p.conn.AddRule(p.rule(r, policy))
		}
		p.rules[policy] = fmt.Sprintf("%+v", rules)
	}
	p.conn.AddRule(&nftables.Rule{Table: p.table, Chain: p.ingress, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
	p.conn.AddRule(&nftables.Rule{Table: p.table, Chain: p.egress, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
}

// replaceRules queues the rule changes policy by policy: the rules of a
// policy gone or changed are deleted (found by the policy's tag in their
// user data), those of a new or changed one inserted at the chain's head
// (allow rules commute; the drop stays last). Unchanged policies' rules
// are not touched, so a policy change costs its own rules only.
func (p *Programmer) replaceRules(m *Model) error {
	want := map[string]string{}
	byPolicy := rulesByPolicy(m.Rules)
	for policy, rules := range byPolicy {
		want[policy] = fmt.Sprintf("%+v", rules)
	}
	stale := map[string]bool{}
	for policy, key := range p.rules {
		if want[policy] != key {
			stale[policy] = true
		}
	}
	if len(stale) > 0 {
		for _, ch := range []*nftables.Chain{p.ingress, p.egress} {
			rules, err := p.conn.GetRules(p.table, ch)
			if err != nil {
				return fmt.Errorf("list chain %s: %w", ch.Name, err)
			}
			for _, r := range rules {
				if stale[string(r.UserData)] {
					if err := p.conn.DelRule(r); err != nil {
						return fmt.Errorf("delete rule of %s: %w", r.UserData, err)
					}
				}
			}
		}
	}
	for policy, rules := range byPolicy {
		if p.rules[policy] == want[policy] {
			continue
		}
		for _, r := range rules {
			p.conn.InsertRule(p.rule(r, policy))
		}
	}
	p.rules = want
	return nil
}

// rulesByPolicy groups rules by the policy they come from (the prefix of
// their Local set's name).
func rulesByPolicy(rules []Rule) map[string][]Rule {
	out := map[string][]Rule{}
	for _, r := range rules {
		policy := strings.TrimSuffix(r.Local, "-tgt")
		out[policy] = append(out[policy], r)
	}
	return out
}

// rule is one allow rule, tagged with its policy.
func (p *Programmer) rule(r Rule, policy string) *nftables.Rule {
	ch, verdict, local, peer := p.ingress, expr.VerdictAccept, daddr, saddr
	if r.Dir == Egress {
		ch, verdict, local, peer = p.egress, expr.VerdictReturn, saddr, daddr
	}
	exprs := lookup(p.sets[r.Local], local(reg0))
	if r.Peer != "" {
		exprs = append(exprs, lookup(p.sets[r.Peer], peer(reg0))...)
	}
	if r.Proto != 0 {
		exprs = append(exprs, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}})
	}
	if r.PortFirst != 0 {
		exprs = append(exprs, dport(1),
			&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: port(r.PortFirst)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: port(r.PortLast)})
	}
	if r.Named != "" {
		exprs = append(exprs, daddr(reg0), &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1}, dport(reg2),
			&expr.Lookup{SourceRegister: reg0, SetName: r.Named, SetID: p.sets[r.Named].ID})
	}
	return &nftables.Rule{Table: p.table, Chain: ch, Exprs: append(exprs, &expr.Verdict{Kind: verdict}), UserData: []byte(policy)}
}

// addElements queues s's elements into set, in messages of bounded size.
func (p *Programmer) addElements(set *nftables.Set, s Set) error {
	var elems []nftables.SetElement
	switch s.Kind {
	case AddrSet:
		for _, a := range s.Addrs {
			elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
		}
	case RangeSet:
		for _, r := range s.Ranges {
			elems = append(elems, nftables.SetElement{Key: r.First.AsSlice()})
			if end := addrU32(r.Last) + 1; end != 0 { // a range to the last address has no end element
				elems = append(elems, nftables.SetElement{Key: u32Addr(end).AsSlice(), IntervalEnd: true})
			}
		}
	case TupleSet:
		for _, t := range s.Tuples {
			k := make([]byte, 12)
			a := t.Addr.As4()
			copy(k, a[:])
			k[4] = t.Proto
			binary.BigEndian.PutUint16(k[8:], t.Port)
			elems = append(elems, nftables.SetElement{Key: k})
		}
	}
	for len(elems) > 0 {
		n := min(len(elems), elementsPerMessage)
		if err := p.conn.SetAddElements(set, elems[:n]); err != nil {
			return fmt.Errorf("netpol set %s: %w", s.Name, err)
		}
		elems = elems[n:]
	}
	return nil
}

func saddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}

func daddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

func dport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func lookup(set *nftables.Set, load expr.Any) []expr.Any {
	return []expr.Any{load, &expr.Lookup{SourceRegister: reg0, SetName: set.Name, SetID: set.ID}}
}

func port(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

func binaryNative(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// bigSocketBuffers lets one transaction (the whole table, at thousands of
// set elements) fit the netlink socket's buffers.
func bigSocketBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 16<<20),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20))
	})
	return errors.Join(err, serr)
}
