package netproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nftVersion is part of every content hash and of the base rules' marker:
// bump it when the rules a chain holds change shape, and the next sync
// replaces all chains (and drops sets an older version made).
// v2: round robin through shared per-count chains instead of a chain per
// service.
// v3: endpoint and hairpin sets in 16 shards.
const nftVersion = "v3"

// chainsPerBatch bounds how many chains (each with a few rules) go into one
// netlink batch, so that the batch and its acks fit the socket buffers.
// Each batch is atomic and batches are ordered so that nothing points at a
// chain that does not exist yet.
const chainsPerBatch = 300

const nftBaseRuleMarker = "skiff-base-" + nftVersion

func init() {
	registerBackend(backendType{name: BackendNFTables, preference: 2,
		build: func(cfg Config, ns netns.NsHandle, log *slog.Logger) (backend, error) {
			return newNFTBackend(cfg, ns, log)
		}})
}

// nftBackend implements Services with DNAT in an nftables table of its own:
//
//	services       svc-rr: ip . proto . port -> count . shard . id, then
//	               rr-chains: count . shard -> goto n-<count>-<shard>, or
//	               svc-ips: ip . proto . port -> goto s-<svc> (affinity);
//	               the same for NodePorts (nodeport-rr, np-chains,
//	               svc-nodeports)
//	n-<count>-<shard>  masquerade marks, then `dnat to id . numgen inc mod
//	               count map @svc-endpoints-<shard>`; one chain for every
//	               service with that many ready endpoints in that shard
//	s-<svc>        affinity: masquerade marks, the client's remembered
//	               endpoint (timed sets a-<svc>-<ep>), else numgen over the
//	e-<svc>-<ep>   chains that remember the client and DNAT
//	nat-postrouting  hairpin (`jump` by `ip daddr & 0.0.0.15` to hairpin-<n>:
//	               daddr . dport . saddr in loopback-<n>) and marked packets:
//	               masquerade
//
// Chain names carry a hash of their content, so "actual state" is one dump of
// chain names and map elements; a change builds the new chain, repoints the
// map element and deletes the old chain in one atomic batch. A change of a
// round-robin service is only element updates (plus a shared chain when its
// endpoint count is new).
type nftBackend struct {
	cfg   Config
	log   *slog.Logger
	ns    netns.NsHandle
	conn  *nftables.Conn
	table *nftables.Table
	// synced: perSvc and refs describe the kernel (the last sync
	// succeeded); false forces a full sync that reads the kernel back.
	synced bool
	rules  int // kernel objects owned, after the last sync
	// perSvc: the objects of each service port as last programmed;
	// refs: how many service ports use each shared object (by refKey).
	perSvc map[string]*svcObjects
	refs   map[refKey]int
	// countChains caches the shared round-robin chains by endpoint count
	// (their names are hashes: computing one per service is measurable).
	countChains map[countChainKey]nftChain
	dump        *setDumper
}

// refKey names a shared object: an element (set, key) or a chain ("", name).
type refKey struct{ set, key string }

func chainRef(c nftChain) refKey { return refKey{"", c.name} }

func elemRef(e nftElem) refKey { return refKey{e.set, e.key} }

func newNFTBackend(cfg Config, ns netns.NsHandle, log *slog.Logger) (*nftBackend, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.AsLasting(),
		nftables.WithSockOptions(bigSocketBuffers))
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return &nftBackend{
		cfg: cfg, log: log, ns: ns, conn: conn,
		table:       &nftables.Table{Family: nftables.TableFamilyIPv4, Name: cfg.NFTTable},
		countChains: map[countChainKey]nftChain{},
		dump:        &setDumper{ns: ns},
	}, nil
}

func (b *nftBackend) name() string { return BackendNFTables }

func (b *nftBackend) close() error {
	b.dump.close()
	return b.conn.CloseLasting()
}

// cleanup deletes the whole table (used when the operator switches backends
// or removes the proxy, never during a sync).
func (b *nftBackend) cleanup() error {
	if _, err := b.conn.ListTableOfFamily(b.table.Name, b.table.Family); err != nil {
		return nil // nothing there
	}
	b.synced = false
	b.conn.DelTable(b.table)
	return b.conn.Flush()
}

func (b *nftBackend) sync(ctx context.Context, want desiredState, changed map[string]bool, full bool) (syncResult, error) {
	if full || !b.synced || changed == nil {
		return b.fullSync(want)
	}
	// Incremental: only the changed service ports are recomputed and
	// compared, against what the last sync programmed for them.
	haveP, wantP := newNFTObjects(), newNFTObjects()
	type sharedObj struct {
		chain  *nftChain
		elem   *nftElem
		before int
	}
	touched := map[refKey]*sharedObj{}
	touch := func(s *svcObjects, delta int) {
		for i := range s.sharedChains {
			k := chainRef(s.sharedChains[i])
			if touched[k] == nil {
				touched[k] = &sharedObj{chain: &s.sharedChains[i], before: b.refs[k]}
			}
			b.refs[k] += delta
		}
		for i := range s.sharedElems {
			k := elemRef(s.sharedElems[i])
			if touched[k] == nil {
				touched[k] = &sharedObj{elem: &s.sharedElems[i], before: b.refs[k]}
			}
			b.refs[k] += delta
		}
	}
	for id := range changed {
		if old := b.perSvc[id]; old != nil {
			haveP.addOwn(old)
			touch(old, -1)
			delete(b.perSvc, id)
		}
		if sp := want[id]; sp != nil {
			n := b.objectsFor(sp)
			b.perSvc[id] = n
			wantP.addOwn(n)
			touch(n, +1)
		}
	}
	for k, s := range touched {
		after := b.refs[k]
		if after <= 0 {
			delete(b.refs, k)
		}
		for _, side := range []struct {
			o  *nftObjects
			in bool
		}{{haveP, s.before > 0}, {wantP, after > 0}} {
			switch {
			case !side.in:
			case s.chain != nil:
				side.o.addChain(*s.chain)
			default:
				side.o.addElem(*s.elem)
			}
		}
	}
	n, err := b.apply(haveP, wantP)
	if err != nil {
		b.synced = false
		return syncResult{}, err
	}
	b.deleteStaleUDP(haveP.udpFlows, wantP.udpFlows)
	b.rules += wantP.rules - haveP.rules
	return syncResult{Rules: b.rules, Changed: n, Recomputed: len(changed)}, nil
}

// fullSync reads the kernel back and repairs every difference.
func (b *nftBackend) fullSync(want desiredState) (syncResult, error) {
	b.perSvc = make(map[string]*svcObjects, len(want))
	b.refs = map[refKey]int{}
	sizes := map[string]int{}
	for id, sp := range want {
		o := b.objectsFor(sp)
		b.perSvc[id] = o
		for _, e := range o.elems {
			sizes[e.set]++
		}
		for _, e := range o.sharedElems {
			sizes[e.set]++
		}
	}
	desired := newNFTObjects()
	for set, n := range sizes {
		desired.elems[set] = make(map[string]string, n)
	}
	for _, o := range b.perSvc {
		desired.addOwn(o)
		for _, c := range o.sharedChains {
			b.refs[chainRef(c)]++
			desired.addChain(c)
		}
		for _, e := range o.sharedElems {
			b.refs[elemRef(e)]++
			desired.addElem(e)
		}
	}
	b.synced = false
	if err := b.ensureBase(); err != nil {
		return syncResult{}, err
	}
	actual, err := b.readKernel()
	if err != nil {
		return syncResult{}, err
	}
	changed, err := b.apply(actual, desired)
	if err != nil {
		return syncResult{}, err
	}
	// (conntrack entries of flows to endpoints removed while no proxy ran
	// are not known; UDP clients move on when those entries time out)
	b.synced, b.rules = true, desired.rules
	return syncResult{Rules: desired.rules, Changed: changed, Recomputed: len(want)}, nil
}

// ensureBase creates the table, maps and base chains if missing, and
// rewrites a base chain whose rules are not ours (atomically: flush and
// refill happen in one batch, so traffic never sees an empty chain).
func (b *nftBackend) ensureBase() error {
	c := b.conn
	c.AddTable(b.table)
	for _, s := range b.setDefs() {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("nftables: add set %s: %w", s.Name, err)
		}
	}
	dispatch, dispatchElems := b.hairpinDispatch()
	if err := c.AddSet(dispatch, nil); err != nil {
		return fmt.Errorf("nftables: add set %s: %w", dispatch.Name, err)
	}
	bases := b.baseChains()
	// the chains base chains jump to first
	for _, bc := range bases {
		c.AddChain(bc.chain)
	}
	// (re)adding an identical element is not an error
	if err := c.SetAddElements(dispatch, dispatchElems); err != nil {
		return fmt.Errorf("nftables: fill %s: %w", dispatch.Name, err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: create table %s: %w", b.table.Name, err)
	}
	if err := rewriteBaseChains(c, b.table, bases, b.log); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: write base chains: %w", err)
	}
	return nil
}

// rewriteBaseChains makes each base chain hold exactly its rules, all
// carrying our marker: a chain that already does is left alone (no gap in
// traffic on restart); one that differs is flushed and rewritten (in the
// caller's next Flush). Both backends keep their base chains this way.
func rewriteBaseChains(c *nftables.Conn, table *nftables.Table, bases []baseChain, log *slog.Logger) error {
	for _, bc := range bases {
		rules, err := c.GetRules(table, bc.chain)
		if err != nil {
			return fmt.Errorf("nftables: read chain %s: %w", bc.chain.Name, err)
		}
		if len(rules) == len(bc.rules) && allMarked(rules) {
			continue
		}
		c.FlushChain(bc.chain)
		for _, r := range bc.rules {
			c.AddRule(&nftables.Rule{Table: table, Chain: bc.chain, Exprs: r, UserData: []byte(nftBaseRuleMarker)})
		}
		log.Info("nftables: (re)wrote base chain", "table", table.Name, "chain", bc.chain.Name, "had_rules", len(rules))
	}
	return nil
}

func allMarked(rules []*nftables.Rule) bool {
	for _, r := range rules {
		if string(r.UserData) != nftBaseRuleMarker {
			return false
		}
	}
	return true
}

// readKernel reads the service-dependent objects back from the kernel.
func (b *nftBackend) readKernel() (*nftObjects, error) {
	o := newNFTObjects()
	chains, err := b.conn.ListChainsOfTableFamily(b.table.Family)
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == b.table.Name && ch.Hooknum == nil && isServiceChain(ch.Name) {
			o.chains[ch.Name] = nil
		}
	}
	sets, err := b.conn.GetSets(b.table)
	if err != nil {
		return nil, fmt.Errorf("nftables: list sets: %w", err)
	}
	fixed := map[string]bool{nftHairpinShards: true}
	for _, name := range fixedSetNames() {
		fixed[name] = true
	}
	for _, s := range sets {
		// affinity sets, and sets an older version left (apply deletes
		// those once no chain uses them)
		if !fixed[s.Name] {
			o.sets[s.Name] = true
		}
	}
	for _, set := range b.setDefs() {
		elems, err := b.dump.dumpElements(set)
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		o.elems[set.Name] = elems
	}
	return o, nil
}

// isServiceChain: the chains that change with Services (e-, n-, p-, s-, x-).
func isServiceChain(name string) bool {
	return len(name) > 2 && name[1] == '-' && strings.ContainsRune("enpsx", rune(name[0]))
}

// apply changes the kernel from have to want, in ordered atomic batches:
// new sets and chains, then map elements, then removal of what is unused.
func (b *nftBackend) apply(have, want *nftObjects) (int, error) {
	c := b.conn
	ops := 0
	changed := 0
	flushIfBig := func(force bool) error {
		if ops == 0 || (!force && ops < chainsPerBatch) {
			return nil
		}
		ops = 0
		return c.Flush()
	}
	for name := range want.sets {
		if !have.sets[name] {
			s := &nftables.Set{Table: b.table, Name: name, KeyType: nftables.TypeIPAddr, HasTimeout: true, Dynamic: true}
			if err := c.AddSet(s, nil); err != nil {
				return changed, fmt.Errorf("nftables: add set %s: %w", name, err)
			}
			ops++
			changed++
		}
	}
	// e- < s- < x-: a chain is created after the chains it jumps to
	// (n- and p- jump nowhere).
	var newChains []string
	for name := range want.chains {
		if _, ok := have.chains[name]; !ok {
			newChains = append(newChains, name)
		}
	}
	slices.Sort(newChains)
	for _, name := range newChains {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: b.table})
		want.chains[name](c, ch)
		ops++
		changed++
		if err := flushIfBig(false); err != nil {
			return changed, fmt.Errorf("nftables: add chains: %w", err)
		}
	}
	if err := flushIfBig(true); err != nil {
		return changed, fmt.Errorf("nftables: add chains: %w", err)
	}
	eb := &elementBatcher{conn: c}
	for _, set := range b.setDefs() {
		h, w := have.elems[set.Name], want.elems[set.Name]
		verdict := set.IsMap && set.DataType.Name == nftables.TypeVerdict.Name
		var del []nftables.SetElement
		add := make([]nftables.SetElement, 0, max(len(w)-len(h), 0))
		for k, v := range h {
			if wv, ok := w[k]; !ok || wv != v {
				del = append(del, nftables.SetElement{Key: []byte(k)})
			}
		}
		for k, v := range w {
			if hv, ok := h[k]; ok && hv == v {
				continue
			}
			e := nftables.SetElement{Key: []byte(k)}
			switch {
			case verdict:
				e.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: v}
			case set.IsMap:
				e.Val = []byte(v)
			}
			add = append(add, e)
		}
		if err := eb.change(set, del, add); err != nil {
			return changed, err
		}
		changed += len(add) + len(del)
	}
	if err := eb.flush(); err != nil {
		return changed, fmt.Errorf("nftables: update elements: %w", err)
	}
	var oldChains []string
	for name := range have.chains {
		if _, ok := want.chains[name]; !ok {
			oldChains = append(oldChains, name)
		}
	}
	slices.Sort(oldChains)
	slices.Reverse(oldChains) // x- before s- before e-: referrers go first
	for _, name := range oldChains {
		c.DelChain(&nftables.Chain{Name: name, Table: b.table})
		ops++
		changed++
		if err := flushIfBig(false); err != nil {
			return changed, fmt.Errorf("nftables: delete chains: %w", err)
		}
	}
	if err := flushIfBig(true); err != nil {
		return changed, fmt.Errorf("nftables: delete chains: %w", err)
	}
	for name := range have.sets {
		if !want.sets[name] {
			c.DelSet(&nftables.Set{Table: b.table, Name: name})
			ops++
			changed++
		}
	}
	if err := flushIfBig(true); err != nil {
		return changed, fmt.Errorf("nftables: delete sets: %w", err)
	}
	return changed, nil
}

// elementBatcher queues element changes of any number of sets and flushes
// them in batches. A sync's changes are normally far below one batch, so
// all sets change in one atomic step: a count chain never sees its endpoint
// elements half updated.
type elementBatcher struct {
	conn  *nftables.Conn
	bytes int // queued since the last flush
}

// One message carries its elements in a nested attribute whose length is
// 16 bits: 1,000 vmap elements overflow it (the kernel then answers ENOENT).
// Messages are filled to msgBytes by an upper estimate of each element's
// encoded size. A batch holds up to batchBytes of messages: the kernel
// applies a batch in one transaction and each batch costs a commit, so few
// large batches are fastest (10,000 services × 10 endpoints: ~3 s in 4,000-
// element batches, ~1 s in one). The whole batch goes out in one sendmsg,
// which must fit the socket's send buffer (16 MiB, bigSocketBuffers).
const msgBytes, batchBytes = 60 << 10, 8 << 20

// elemSize is an upper bound of an element's netlink encoding: nested
// element, key and data attributes (4-byte headers, 4-byte padding) and, for
// verdicts, the verdict code and chain name.
func elemSize(e *nftables.SetElement) int {
	n := 4 + 8 + len(e.Key) + 3
	if e.Val != nil {
		n += 8 + len(e.Val) + 3
	}
	if e.VerdictData != nil {
		n += 8 + 8 + 4 + len(e.VerdictData.Chain) + 4
	}
	return n
}

// change deletes and adds elements of set. A key deleted and added again
// (repointed) goes in one message pair, so it is never missing between
// batches.
func (eb *elementBatcher) change(set *nftables.Set, del, add []nftables.SetElement) error {
	type op struct{ del, add int } // indexes; -1: none
	ops := make([]op, 0, len(del)+len(add))
	var byKey map[string]int
	if len(del) > 0 && len(add) > 0 {
		byKey = make(map[string]int, len(del))
	}
	for i := range del {
		if byKey != nil {
			byKey[string(del[i].Key)] = len(ops)
		}
		ops = append(ops, op{i, -1})
	}
	for i := range add {
		if j, ok := byKey[string(add[i].Key)]; ok {
			ops[j].add = i
			continue
		}
		ops = append(ops, op{-1, i})
	}
	var d, a []nftables.SetElement
	size := 0
	send := func() error {
		if len(d) > 0 {
			if err := eb.conn.SetDeleteElements(set, d); err != nil {
				return fmt.Errorf("nftables: %s: delete elements: %w", set.Name, err)
			}
		}
		if len(a) > 0 {
			if err := eb.conn.SetAddElements(set, a); err != nil {
				return fmt.Errorf("nftables: %s: add elements: %w", set.Name, err)
			}
		}
		eb.bytes += size
		d, a, size = d[:0], a[:0], 0
		if eb.bytes >= batchBytes {
			if err := eb.flush(); err != nil {
				return fmt.Errorf("nftables: update %s: %w", set.Name, err)
			}
		}
		return nil
	}
	for _, o := range ops {
		n := 0
		if o.del >= 0 {
			n = max(n, elemSize(&del[o.del]))
		}
		if o.add >= 0 {
			n = max(n, elemSize(&add[o.add]))
		}
		if size+n > msgBytes {
			if err := send(); err != nil {
				return err
			}
		}
		size += n
		if o.del >= 0 {
			d = append(d, del[o.del])
		}
		if o.add >= 0 {
			a = append(a, add[o.add])
		}
	}
	return send()
}

func (eb *elementBatcher) flush() error {
	if eb.bytes == 0 {
		return nil
	}
	eb.bytes = 0
	return eb.conn.Flush()
}

// deleteStaleUDP removes conntrack entries of UDP flows from a ClusterIP to
// an endpoint that is gone. UDP has no connection end: without this a
// client that keeps sending (DNS) would be stuck on the dead endpoint's
// conntrack entry for as long as it keeps sending. TCP needs nothing: its
// entries end with the connection, and a live one must keep working.
func (b *nftBackend) deleteStaleUDP(have, want map[[2]netip.Addr]bool) {
	var filters []netlink.CustomConntrackFilter
	for pair := range have {
		if want[pair] {
			continue
		}
		f := &netlink.ConntrackFilter{}
		if err := errors.Join(f.AddIP(netlink.ConntrackOrigDstIP, pair[0].AsSlice()),
			f.AddIP(netlink.ConntrackReplySrcIP, pair[1].AsSlice()), f.AddProtocol(unix.IPPROTO_UDP)); err != nil {
			b.log.Warn("conntrack filter", "err", err)
			continue
		}
		filters = append(filters, f)
	}
	if len(filters) == 0 {
		return
	}
	h, err := netlink.NewHandleAt(b.ns, unix.NETLINK_NETFILTER)
	if err != nil {
		b.log.Warn("conntrack: open netlink", "err", err)
		return
	}
	defer h.Close()
	n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		b.log.Warn("conntrack: delete stale UDP entries", "err", err)
		return
	}
	if n > 0 {
		b.log.Debug("conntrack: deleted stale UDP entries", "count", n)
	}
}
