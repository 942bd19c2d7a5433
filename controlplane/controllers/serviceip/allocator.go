package serviceip

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
)

// ipRange is the usable addresses of a CIDR (network and broadcast
// addresses excluded), as offsets from the base.
type ipRange struct {
	prefix netip.Prefix
	base   netip.Addr
	size   uint64 // usable addresses
}

// parseRange reads a service CIDR such as "10.96.0.0/12".
func parseRange(cidr string) (*ipRange, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("%w: service CIDR %q: %v", errBadConfig, cidr, err)
	}
	p = p.Masked()
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits < 2 {
		return nil, fmt.Errorf("%w: service CIDR %q has no usable addresses", errBadConfig, cidr)
	}
	if hostBits > 62 {
		hostBits = 62 // more addresses than any cluster needs
	}
	return &ipRange{prefix: p, base: p.Addr(), size: (uint64(1) << hostBits) - 2}, nil
}

// at is the i-th usable address (0 is the address after the network's).
func (r *ipRange) at(i uint64) netip.Addr {
	b := new(big.Int).SetBytes(r.base.AsSlice())
	b.Add(b, new(big.Int).SetUint64(i+1))
	raw := b.FillBytes(make([]byte, r.base.BitLen()/8))
	a, _ := netip.AddrFromSlice(raw)
	return a
}

// contains: ip is a usable address of the range.
func (r *ipRange) contains(ip netip.Addr) bool {
	if !r.prefix.Contains(ip) || ip == r.base {
		return false
	}
	b := new(big.Int).SetBytes(ip.AsSlice())
	b.Sub(b, new(big.Int).SetBytes(r.base.AsSlice()))
	return b.IsUint64() && b.Uint64() >= 1 && b.Uint64() <= r.size
}

// pick returns a free value by probing from a random start: random so that
// two allocators (a deposed leader still finishing) rarely collide, linear
// so a nearly full range is still searched completely. taken reports
// values in use; ok is false when none is free.
func pick[T any](rng *rand.Rand, n uint64, at func(uint64) T, taken func(T) bool) (v T, ok bool) {
	if n == 0 {
		return v, false
	}
	start := rng.Uint64N(n)
	for i := uint64(0); i < n; i++ {
		c := at((start + i) % n)
		if !taken(c) {
			return c, true
		}
	}
	return v, false
}
