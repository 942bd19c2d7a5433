package network

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// MasqTable is the nftables table (family ip) of the pod masquerade rule.
const MasqTable = "skiff-podmasq"

// ErrBadMasq: the ranges given to EnsureMasquerade are not usable.
var ErrBadMasq = errors.New("network: bad masquerade ranges")

// EnsureMasquerade programs, in its own table, the one NAT rule pods need:
// `ip saddr <podCIDR> ip daddr != <clusterCIDR> masquerade` in postrouting.
// Traffic between pods (anywhere in the cluster range, on this node or across
// the overlay) keeps the source pod's own IP, as Kubernetes' network model
// requires; only traffic leaving the cluster range is masqueraded. It replaces
// the bridge plugin's ipMasq (which masquerades everything leaving the pod
// CIDR, other nodes' pods included): run the built-in list with IPMasq off.
// Calling it again replaces the rule. netnsFd < 0 means the caller's netns.
func EnsureMasquerade(podCIDR, clusterCIDR netip.Prefix, netnsFd int) error {
	if !podCIDR.IsValid() || !podCIDR.Addr().Is4() || !clusterCIDR.IsValid() || !clusterCIDR.Addr().Is4() {
		return fmt.Errorf("%w: pod range %v and cluster range %v must both be IPv4", ErrBadMasq, podCIDR, clusterCIDR)
	}
	if !clusterCIDR.Contains(podCIDR.Addr()) || podCIDR.Bits() < clusterCIDR.Bits() {
		return fmt.Errorf("%w: pod range %v is not inside the cluster range %v", ErrBadMasq, podCIDR, clusterCIDR)
	}
	conn, err := masqConn(netnsFd)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: MasqTable}
	// Add-then-delete-then-add in one batch: replaces an earlier version
	// atomically and does not fail when there is none.
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	ch := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	exprs := append(prefixMatch(12, podCIDR.Masked(), expr.CmpOpEq), prefixMatch(16, clusterCIDR.Masked(), expr.CmpOpNeq)...)
	conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(exprs, &expr.Masq{})})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("network: masquerade rule (pod range %v, cluster range %v): %w", podCIDR, clusterCIDR, err)
	}
	return nil
}

// RemoveMasquerade deletes the table of EnsureMasquerade (none: no-op).
func RemoveMasquerade(netnsFd int) error {
	conn, err := masqConn(netnsFd)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: MasqTable}
	conn.AddTable(t)
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("network: remove masquerade table: %w", err)
	}
	return nil
}

func masqConn(netnsFd int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if netnsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFd))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("network: nftables: %w", err)
	}
	return conn, nil
}

// prefixMatch is `ip saddr|daddr (at offset) & mask op network`.
func prefixMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	m := make([]byte, 4)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	network := p.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: network[:]},
	}
}
