package serviceip

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestIPRange(t *testing.T) {
	cases := []struct {
		cidr        string
		size        uint64
		first, last string
		in, out     []string
	}{
		{"10.96.0.0/12", 1<<20 - 2, "10.96.0.1", "10.111.255.254", []string{"10.100.3.4"}, []string{"10.96.0.0", "10.111.255.255", "10.112.0.1", "192.168.0.1"}},
		{"10.96.0.5/30", 2, "10.96.0.5", "10.96.0.6", nil, []string{"10.96.0.4", "10.96.0.7"}},
		{"fd00::/120", 254, "fd00::1", "fd00::fe", []string{"fd00::10"}, []string{"fd00::", "fd00::ff"}},
	}
	for _, c := range cases {
		r, err := parseRange(c.cidr)
		if err != nil {
			t.Fatal(err)
		}
		if r.size != c.size || r.at(0).String() != c.first || r.at(r.size-1).String() != c.last {
			t.Fatalf("%s: size %d first %s last %s", c.cidr, r.size, r.at(0), r.at(r.size-1))
		}
		for _, ip := range append(c.in, c.first, c.last) {
			if !r.contains(netip.MustParseAddr(ip)) {
				t.Errorf("%s should contain %s", c.cidr, ip)
			}
		}
		for _, ip := range c.out {
			if r.contains(netip.MustParseAddr(ip)) {
				t.Errorf("%s should not contain %s", c.cidr, ip)
			}
		}
	}
	for _, bad := range []string{"10.96.0.0", "10.96.0.0/31", "nonsense/12"} {
		if _, err := parseRange(bad); err == nil {
			t.Errorf("parseRange(%q) accepted", bad)
		}
	}
}

func TestPickFindsLastFreeAndReportsFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	taken := map[uint64]bool{}
	for i := uint64(0); i < 100; i++ {
		taken[i] = i != 73
	}
	id := func(i uint64) uint64 { return i }
	for k := 0; k < 20; k++ {
		if v, ok := pick(rng, 100, id, func(v uint64) bool { return taken[v] }); !ok || v != 73 {
			t.Fatalf("pick = %d, %v; want 73", v, ok)
		}
	}
	taken[73] = true
	if _, ok := pick(rng, 100, id, func(v uint64) bool { return taken[v] }); ok {
		t.Fatal("pick found a value in a full range")
	}
}
