// Package gossiptest helps tests and benchmarks of gossip membership cut
// members apart without root: memberlist transport wrappers that drop what
// a member sends to chosen addresses (Dropper) or a share of all its
// packets (Lossy).
package gossiptest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrCut is the error of a dial to a blocked address.
var ErrCut = errors.New("gossiptest: partitioned")

// Dropper drops every packet and stream a member sends to a blocked
// address: a one-way cut; a Dropper on each side blocking the other makes
// a partition between two members. Use Wrap as gossip.Config.WrapTransport.
type Dropper struct {
	memberlist.NodeAwareTransport
	mu      sync.Mutex
	blocked map[string]bool
	dropped atomic.Int64
}

// Wrap wraps the member's transport (gossip.Config.WrapTransport).
func (d *Dropper) Wrap(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	d.NodeAwareTransport = t
	return d
}

// Block drops from now on what is sent to addr (host:port).
func (d *Dropper) Block(addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.blocked == nil {
		d.blocked = map[string]bool{}
	}
	d.blocked[addr] = true
}

// Dropped counts the packets and dials dropped so far.
func (d *Dropper) Dropped() int64 { return d.dropped.Load() }

func (d *Dropper) drops(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.blocked[addr] {
		d.dropped.Add(1)
		return true
	}
	return false
}

// WriteTo implements memberlist.Transport.
func (d *Dropper) WriteTo(b []byte, addr string) (time.Time, error) {
	if d.drops(addr) {
		return time.Now(), nil
	}
	return d.NodeAwareTransport.WriteTo(b, addr)
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (d *Dropper) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if d.drops(a.Addr) {
		return time.Now(), nil
	}
	return d.NodeAwareTransport.WriteToAddress(b, a)
}

// DialTimeout implements memberlist.Transport.
func (d *Dropper) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if d.drops(addr) {
		return nil, ErrCut
	}
	return d.NodeAwareTransport.DialTimeout(addr, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (d *Dropper) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if d.drops(a.Addr) {
		return nil, ErrCut
	}
	return d.NodeAwareTransport.DialAddressTimeout(a, timeout)
}
