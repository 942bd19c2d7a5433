package proxytest

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/skiffhq/skiff/netproxy"
)

// incremental: with many services programmed, one endpoint change is
// applied by recomputing that one service port only, it takes effect, and
// a full resync afterwards finds nothing to repair (the incremental picture
// matches the kernel).
func incremental(ctx context.Context, e *Env) error {
	const others = 200
	bs := e.Lab.Backends
	key := func(i int) netproxy.ServiceKey {
		return netproxy.ServiceKey{Namespace: "test", Name: fmt.Sprintf("inc%d", i)}
	}
	defer func() {
		for i := 0; i < others; i++ {
			e.Proxy.DeleteService(key(i))
			e.Proxy.DeleteEndpoints(key(i))
		}
		_ = e.Proxy.Sync(ctx)
	}()
	for i := 0; i < others; i++ {
		vip := netip.AddrFrom4([4]byte{10, 96, 10 + byte(i/250), byte(1 + i%250)})
		if err := e.Proxy.SetService(ServiceFor(key(i).Name, vip.String(), netproxy.TCP, 80, 0, 0)); err != nil {
			return err
		}
		if err := e.Proxy.SetEndpoints(EndpointsFor(key(i).Name, bs...)); err != nil {
			return err
		}
	}
	if err := e.Proxy.Sync(ctx); err != nil {
		return err
	}
	const vip = "10.96.10.1:80" // inc0
	before, err := Hits(e.Lab.Client, "tcp", vip, 3*len(bs))
	if err != nil {
		return err
	}
	if err := evenSplit(before, bs, 3*len(bs)); err != nil {
		return err
	}
	rest := bs[1:]
	if err := e.Proxy.SetEndpoints(EndpointsFor(key(0).Name, rest...)); err != nil {
		return err
	}
	if err := e.Proxy.Sync(ctx); err != nil {
		return err
	}
	st := e.Proxy.LastSync()
	e.Logf("one endpoint removed among %d services: recomputed %d service ports, changed %d objects in %s",
		others, st.Recomputed, st.Changed, st.Duration)
	if st.Full || st.Recomputed != 1 {
		return fmt.Errorf("one endpoint change recomputed %d service ports (full=%v), want 1", st.Recomputed, st.Full)
	}
	if st.Changed == 0 {
		return fmt.Errorf("endpoint change applied nothing")
	}
	after, err := Hits(e.Lab.Client, "tcp", vip, 3*len(rest))
	if err != nil {
		return err
	}
	if err := evenSplit(after, rest, 3*len(rest)); err != nil {
		return fmt.Errorf("after removing %s: %w", bs[0].Name, err)
	}
	if e.IPVS {
		if err := e.checkIPVS("TCP "+vip, func(d map[string]int) error {
			if w, ok := d[addrPort(bs[0])]; ok && w != 0 {
				return fmt.Errorf("removed %s still has weight %d", addrPort(bs[0]), w)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	// drain ticks and the like: a sync without changes recomputes nothing
	if err := e.Proxy.Sync(ctx); err != nil {
		return err
	}
	incRules := e.Proxy.LastSync().Rules
	if err := e.Proxy.FullSync(ctx); err != nil {
		return err
	}
	full := e.Proxy.LastSync()
	if full.Changed != 0 {
		return fmt.Errorf("full resync after the incremental change repaired %d objects", full.Changed)
	}
	if full.Rules != incRules {
		return fmt.Errorf("incremental syncs count %d kernel objects, a full sync %d", incRules, full.Rules)
	}
	return nil
}
