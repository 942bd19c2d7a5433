package netproxy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/skiffhq/skiff/netproxy"
	"github.com/skiffhq/skiff/netproxy/proxytest"
	"golang.org/x/sys/unix"
)

// serviceChains lists the chains of the proxy's table that change with
// Services (all but the base chains and the fixed hairpin chains), sorted.
func serviceChains(t *testing.T, lab *proxytest.Lab, table string) []string {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(lab.Node)))
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name == table && ch.Hooknum == nil && ch.Name != "services" && !strings.HasPrefix(ch.Name, "hairpin-") {
			out = append(out, ch.Name)
		}
	}
	slices.Sort(out)
	return out
}

// chainKinds turns "n-3-07-1a2b..." into "n-3" and returns the distinct
// kinds, sorted, and how many chains there are of each.
func chainKinds(names []string) ([]string, map[string]int) {
	count := map[string]int{}
	var kinds []string
	for _, n := range names {
		parts := strings.SplitN(n, "-", 3)
		k := parts[0] + "-" + parts[1]
		if count[k] == 0 {
			kinds = append(kinds, k)
		}
		count[k]++
	}
	slices.Sort(kinds)
	return kinds, count
}

// reachesOnly dials addr n times and fails unless exactly the backends in
// want answered, each at least once.
func reachesOnly(t *testing.T, lab *proxytest.Lab, addr string, want ...*proxytest.Backend) {
	t.Helper()
	n := 6 * len(want)
	counts, err := proxytest.Hits(lab.Client, "tcp", addr, n)
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	for _, b := range want {
		if counts[b.Name] == 0 {
			t.Errorf("%s: %s never answered in %d tries: %v", addr, b.Name, n, counts)
		}
		delete(counts, b.Name)
	}
	if len(counts) > 0 {
		t.Errorf("%s: unexpected backends answered: %v", addr, counts)
	}
}

// TestNFTablesSharedCountChains: round-robin services share one chain per
// endpoint count (and endpoint map shard). A chain stays while any service
// still needs it and goes with the last one, through incremental syncs only.
func TestNFTablesSharedCountChains(t *testing.T) {
	needRoot(t)
	lab := newLab(t, 3)
	cfg := labConfig(t, lab, netproxy.BackendNFTables)
	p, err := netproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Cleanup(); p.Close() })
	ctx := context.Background()
	b0, b1, b2 := lab.Backends[0], lab.Backends[1], lab.Backends[2]
	set := func(name, vip string, nodePort uint16, bs ...*proxytest.Backend) {
		t.Helper()
		if err := p.SetService(proxytest.ServiceFor(name, vip, netproxy.TCP, 80, nodePort, 0)); err != nil {
			t.Fatal(err)
		}
		if err := p.SetEndpoints(proxytest.EndpointsFor(name, bs...)); err != nil {
			t.Fatal(err)
		}
	}
	kinds := func(want ...string) map[string]int {
		t.Helper()
		got, count := chainKinds(serviceChains(t, lab, cfg.NFTTable))
		if !slices.Equal(got, want) {
			t.Fatalf("chain kinds %v (%v), want %v", got, count, want)
		}
		return count
	}
	// More services than endpoint map shards: some must share a chain.
	const many = 40
	vip := func(i int) string { return fmt.Sprintf("10.96.5.%d", i+1) }
	for i := 0; i < many; i++ {
		set(fmt.Sprintf("b%d", i), vip(i), 0, b0, b1)
	}
	set("a", "10.96.3.1", 30081, b0, b1)
	if err := p.FullSync(ctx); err != nil {
		t.Fatal(err)
	}
	nodePortA := fmt.Sprintf("%s:30081", proxytest.NodeClientSide)
	reachesOnly(t, lab, "10.96.3.1:80", b0, b1)
	reachesOnly(t, lab, vip(0)+":80", b0, b1)
	reachesOnly(t, lab, nodePortA, b0, b1)
	if n := kinds("n-2", "p-2")["n-2"]; n >= many {
		t.Fatalf("%d chains for %d services with 2 endpoints: not shared", n, many+1)
	}

	set("a", "10.96.3.1", 30081, b0, b1, b2) // a: 2 -> 3 endpoints; the b's keep n-2
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	reachesOnly(t, lab, "10.96.3.1:80", b0, b1, b2)
	reachesOnly(t, lab, nodePortA, b0, b1, b2)
	kinds("n-2", "n-3", "p-3")
	for i := 0; i < many; i++ {
		reachesOnly(t, lab, vip(i)+":80", b0, b1)
	}

	// Half the b's shrink: the other half still needs every n-2 chain it
	// shares with them.
	for i := 0; i < many/2; i++ {
		set(fmt.Sprintf("b%d", i), vip(i), 0, b2)
	}
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	kinds("n-1", "n-2", "n-3", "p-3")
	for i := 0; i < many; i++ {
		if i < many/2 {
			reachesOnly(t, lab, vip(i)+":80", b2)
		} else {
			reachesOnly(t, lab, vip(i)+":80", b0, b1)
		}
	}
	for i := many / 2; i < many; i++ {
		set(fmt.Sprintf("b%d", i), vip(i), 0, b2)
	}
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	kinds("n-1", "n-3", "p-3") // n-2 went with its last user
	reachesOnly(t, lab, vip(many-1)+":80", b2)
	reachesOnly(t, lab, "10.96.3.1:80", b0, b1, b2)

	// The incremental picture must equal what a full resync finds.
	if err := p.FullSync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.LastSync(); st.Changed != 0 {
		t.Errorf("full resync after incremental changes changed %d objects", st.Changed)
	}

	p.DeleteService(netproxy.ServiceKey{Namespace: "test", Name: "a"})
	for i := 0; i < many; i++ {
		p.DeleteService(netproxy.ServiceKey{Namespace: "test", Name: fmt.Sprintf("b%d", i)})
	}
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := serviceChains(t, lab, cfg.NFTTable); len(got) != 0 {
		t.Errorf("chains left after every service went: %v", got)
	}
	if _, err := proxytest.Dial(lab.Client, "10.96.3.1:80"); err == nil {
		t.Error("deleted service still answers")
	}
}

// TestNFTablesReplacesOlderLayout: a table left by an older version (a chain
// per service and sharded endpoint maps) is converted by the first full
// sync: the old base rules are rewritten, the old chain and set deleted.
func TestNFTablesReplacesOlderLayout(t *testing.T) {
	needRoot(t)
	lab := newLab(t, 2)
	cfg := labConfig(t, lab, netproxy.BackendNFTables)
	c, err := nftables.New(nftables.WithNetNSFd(int(lab.Node)))
	if err != nil {
		t.Fatal(err)
	}
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: cfg.NFTTable})
	idKey, _ := nftables.ConcatSetType(nftables.TypeInteger, nftables.TypeInteger, nftables.TypeInteger)
	epType, _ := nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	oldSet := &nftables.Set{Table: table, Name: "svc-endpoints-63", IsMap: true, Concatenation: true, KeyType: idKey, DataType: epType}
	if err := c.AddSet(oldSet, nil); err != nil {
		t.Fatal(err)
	}
	oldChain := c.AddChain(&nftables.Chain{Name: "s-0123456789ab-cdef0123", Table: table})
	c.AddRule(&nftables.Rule{Table: table, Chain: oldChain, Exprs: []expr.Any{
		&expr.Immediate{Register: unix.NFT_REG32_00, Data: make([]byte, 4)},
		&expr.Immediate{Register: unix.NFT_REG32_01, Data: make([]byte, 4)},
		&expr.Immediate{Register: unix.NFT_REG32_02, Data: make([]byte, 4)},
		&expr.Lookup{SourceRegister: unix.NFT_REG32_00, DestRegister: unix.NFT_REG32_00, IsDestRegSet: true, SetName: oldSet.Name},
	}})
	services := c.AddChain(&nftables.Chain{Name: "services", Table: table})
	c.AddRule(&nftables.Rule{Table: table, Chain: services, UserData: []byte("skiff-base-v1"),
		Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: oldChain.Name}}})
	if err := c.Flush(); err != nil {
		t.Fatalf("build the old layout: %v", err)
	}

	p, err := netproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Cleanup(); p.Close() })
	if err := p.SetService(proxytest.ServiceFor("new", "10.96.4.1", netproxy.TCP, 80, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := p.SetEndpoints(proxytest.EndpointsFor("new", lab.Backends...)); err != nil {
		t.Fatal(err)
	}
	if err := p.FullSync(context.Background()); err != nil {
		t.Fatal(err)
	}
	reachesOnly(t, lab, "10.96.4.1:80", lab.Backends...)
	if got := serviceChains(t, lab, cfg.NFTTable); slices.Contains(got, oldChain.Name) {
		t.Errorf("old chain still there: %v", got)
	}
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if s.Name == oldSet.Name {
			t.Errorf("old set %s still there", s.Name)
		}
	}
}
