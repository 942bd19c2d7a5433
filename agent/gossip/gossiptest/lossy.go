package gossiptest

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Lossy drops each UDP packet a member sends with probability Rate (0–1):
// packet loss on the wire. Streams (TCP) are not touched: the kernel
// retransmits what a lossy network drops from them. Use Wrap as
// gossip.Config.WrapTransport; Rate may change while the member runs.
type Lossy struct {
	memberlist.NodeAwareTransport
	// rate is the drop probability × 1e6.
	rate    atomic.Int64
	sent    atomic.Int64
	dropped atomic.Int64
}

// Wrap wraps the member's transport (gossip.Config.WrapTransport).
func (l *Lossy) Wrap(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	l.NodeAwareTransport = t
	return l
}

// SetRate sets the drop probability (0: none, 0.05: 5 %).
func (l *Lossy) SetRate(p float64) { l.rate.Store(int64(p * 1e6)) }

// Sent and Dropped count the packets offered and the ones dropped.
func (l *Lossy) Sent() int64    { return l.sent.Load() }
func (l *Lossy) Dropped() int64 { return l.dropped.Load() }

func (l *Lossy) drop() bool {
	l.sent.Add(1)
	if r := l.rate.Load(); r > 0 && rand.Int64N(1e6) < r {
		l.dropped.Add(1)
		return true
	}
	return false
}

// WriteTo implements memberlist.Transport.
func (l *Lossy) WriteTo(b []byte, addr string) (time.Time, error) {
	if l.drop() {
		return time.Now(), nil
	}
	return l.NodeAwareTransport.WriteTo(b, addr)
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (l *Lossy) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if l.drop() {
		return time.Now(), nil
	}
	return l.NodeAwareTransport.WriteToAddress(b, a)
}
