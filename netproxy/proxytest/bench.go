package proxytest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/skiffhq/skiff/netproxy"
)

// SyncTimes are what TimeSyncs measures.
type SyncTimes struct {
	Full   time.Duration // first full sync into an empty kernel
	Change time.Duration // one endpoint replaced (median of 5)
	Resync time.Duration // periodic full resync with nothing to repair
}

// TimeSyncs loads n TCP services × 10 endpoints into p and times the full
// sync, the sync that applies one endpoint change (median of 5), and a
// full resync that reads everything back and finds nothing to change.
// The endpoint addresses need not exist: only programming is timed.
func TimeSyncs(p *netproxy.Proxy, n int) (SyncTimes, error) {
	full, change, err := timeSyncs(p, n)
	if err != nil {
		return SyncTimes{}, err
	}
	start := time.Now()
	if err := p.FullSync(context.Background()); err != nil {
		return SyncTimes{}, err
	}
	resync := time.Since(start)
	if st := p.LastSync(); st.Changed != 0 {
		return SyncTimes{}, fmt.Errorf("resync without changes changed %d objects", st.Changed)
	}
	return SyncTimes{Full: full, Change: change, Resync: resync}, nil
}

func timeSyncs(p *netproxy.Proxy, n int) (full, change time.Duration, err error) {
	ctx := context.Background()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%d", i)
		vip := netip.AddrFrom4([4]byte{10, 96 + byte(i>>16), byte(i >> 8), byte(i)})
		if err := p.SetService(ServiceFor(name, vip.String(), netproxy.TCP, 80, 0, 0)); err != nil {
			return 0, 0, err
		}
		if err := p.SetEndpoints(benchEndpoints(name, i, 0)); err != nil {
			return 0, 0, err
		}
	}
	start := time.Now()
	if err := p.FullSync(ctx); err != nil {
		return 0, 0, err
	}
	full = time.Since(start)
	var times []time.Duration
	for gen := 1; gen <= 5; gen++ {
		if err := p.SetEndpoints(benchEndpoints("s7", 7, gen)); err != nil {
			return 0, 0, err
		}
		start := time.Now()
		if err := p.Sync(ctx); err != nil {
			return 0, 0, err
		}
		if st := p.LastSync(); st.Changed == 0 {
			return 0, 0, fmt.Errorf("endpoint change %d applied nothing", gen)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	return full, times[len(times)/2], nil
}

// benchEndpoints: 10 distinct endpoints of service i; gen replaces the last.
func benchEndpoints(name string, i, gen int) netproxy.Endpoints {
	e := netproxy.Endpoints{ServiceKey: netproxy.ServiceKey{Namespace: "test", Name: name}}
	for j := 0; j < 10; j++ {
		second := byte(2 + j)
		if j == 9 {
			second = byte(100 + gen)
		}
		e.Endpoints = append(e.Endpoints, netproxy.Endpoint{
			IP: netip.AddrFrom4([4]byte{10, second, byte(i >> 8), byte(i)}), Ready: true})
	}
	return e
}
