package netproxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Registers: nftables has 16 32-bit registers starting at NFT_REG32_00 (8);
// concatenated keys occupy consecutive ones.
const (
	reg0 = unix.NFT_REG32_00
	reg1 = unix.NFT_REG32_01
	reg2 = unix.NFT_REG32_02
)

// rtnLocal is RTN_LOCAL, the address type `fib ... type local` compares with.
const rtnLocal = 2

func loadSaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}

func loadDaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

func loadL4Proto(reg uint32) expr.Any {
	return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}
}

func loadDport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// loadServiceTuple loads `ip daddr . meta l4proto . th dport` into reg0..reg2.
func loadServiceTuple() []expr.Any {
	return []expr.Any{loadDaddr(reg0), loadL4Proto(reg1), loadDport(reg2)}
}

// loadNodePortTuple loads `meta l4proto . th dport` into reg0..reg1.
func loadNodePortTuple() []expr.Any {
	return []expr.Any{loadL4Proto(reg0), loadDport(reg1)}
}

// serviceKey encodes a set key of type ipv4_addr . inet_proto . inet_service
// (each field padded to 4 bytes, as in registers).
func serviceKey(ip netip.Addr, proto Protocol, port uint16) []byte {
	b := make([]byte, 12)
	a := ip.As4()
	copy(b, a[:])
	b[4] = proto.number()
	binary.BigEndian.PutUint16(b[8:], port)
	return b
}

// nodePortKey encodes inet_proto . inet_service.
func nodePortKey(proto Protocol, port uint16) []byte {
	b := make([]byte, 8)
	b[0] = proto.number()
	binary.BigEndian.PutUint16(b[4:], port)
	return b
}

// endpointValue encodes ipv4_addr . inet_service as NAT map data.
func endpointValue(ap netip.AddrPort) []byte {
	b := make([]byte, 8)
	a := ap.Addr().As4()
	copy(b, a[:])
	binary.BigEndian.PutUint16(b[4:], ap.Port())
	return b
}

func fibLocal(saddr bool) []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: reg0, FlagSADDR: saddr, FlagDADDR: !saddr, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg0, Data: binaryutil.NativeEndian.PutUint32(rtnLocal)},
	}
}

// setMark is `meta mark set meta mark | bits`.
func setMark(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg0},
		&expr.Bitwise{SourceRegister: reg0, DestRegister: reg0, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bits), Xor: binaryutil.NativeEndian.PutUint32(bits)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg0},
	}
}

// markMatches is `meta mark & bits != 0` (or == 0 when unset is true).
func markMatches(bits uint32, unset bool) []expr.Any {
	op := expr.CmpOpNeq
	if unset {
		op = expr.CmpOpEq
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg0},
		&expr.Bitwise{SourceRegister: reg0, DestRegister: reg0, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: reg0, Data: make([]byte, 4)},
	}
}

// saddrOutside is `ip saddr != prefix`.
func saddrOutside(p netip.Prefix) []expr.Any {
	m := make([]byte, 4)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	n := p.Masked().Addr().As4()
	return []expr.Any{
		loadSaddr(reg0),
		&expr.Bitwise{SourceRegister: reg0, DestRegister: reg0, Len: 4, Mask: m, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg0, Data: n[:]},
	}
}

// daddrNotLoopback is `ip daddr != 127.0.0.0/8`.
func daddrNotLoopback() []expr.Any {
	return []expr.Any{
		loadDaddr(reg0),
		&expr.Bitwise{SourceRegister: reg0, DestRegister: reg0, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg0, Data: []byte{127, 0, 0, 0}},
	}
}

func gotoChain(name string) expr.Any { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: name} }

func jumpChain(name string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: name} }

var (
	serviceKeyType, _  = nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	nodePortKeyType, _ = nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	endpointType, _    = nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	loopbackKeyType, _ = nftables.ConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeIPAddr)
)
