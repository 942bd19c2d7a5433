package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// transport is memberlist's network transport, TCP and UDP on one port
// as memberlist's NetTransport, cheaper per packet. NetTransport reads
// every UDP packet into a fresh 64 KiB buffer (what a packet could be at
// most), which memberlist then holds until it has handled the packet: a
// member receiving a handful of ~100-byte probes and acks a second
// allocated and cleared hundreds of KiB a second, and the garbage
// collector's work followed (a third of a member's CPU in a profile of 40
// members). This one reads into one reusable buffer and hands memberlist
// a copy of the packet's size, and sends to an address parsed without a
// resolver call.
type transport struct {
	bindIP   net.IP
	tcp      *net.TCPListener
	udp      *net.UDPConn
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	log      *slog.Logger
	shutdown atomic.Bool
	// done is closed by Shutdown: a loop blocked handing over a packet or
	// stream nobody takes any more (memberlist not started, or gone)
	// returns.
	done chan struct{}
	wg   sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// udpRecvBuf is the receive buffer asked of the kernel (memberlist's own
// choice): bursts of gossip while members join are larger than the
// default.
const udpRecvBuf = 2 * 1024 * 1024

// maxPacket is the largest UDP payload.
const maxPacket = 65536

// listen binds TCP and UDP on ip:port (port 0: a free port, the same for
// both).
func listen(ip net.IP, port int, log *slog.Logger) (*transport, error) {
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, err
	}
	port = tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		_ = tcp.Close()
		return nil, err
	}
	for size := udpRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &transport{bindIP: ip, tcp: tcp, udp: udp, packetCh: make(chan *memberlist.Packet), streamCh: make(chan net.Conn), log: log, done: make(chan struct{})}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.readLoop()
	return t, nil
}

// port is the bound port (TCP and UDP).
func (t *transport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr implements memberlist.Transport: the given address,
// else the bound one, else (bound to every interface) the first private
// address, as NetTransport does.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		a := net.ParseIP(ip)
		if a == nil {
			return nil, 0, fmt.Errorf("advertise address %q is not an IP", ip)
		}
		if a4 := a.To4(); a4 != nil {
			a = a4
		}
		return a, port, nil
	}
	if !t.bindIP.IsUnspecified() {
		return t.bindIP, t.port(), nil
	}
	priv, err := sockaddr.GetPrivateIP()
	if err != nil {
		return nil, 0, fmt.Errorf("interface addresses: %w", err)
	}
	a := net.ParseIP(priv)
	if a == nil {
		return nil, 0, errors.New("no private IP address found; set an advertise address")
	}
	return a, t.port(), nil
}

// WriteTo implements memberlist.Transport.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		// A name rather than IP:port (memberlist passes IPs; a join
		// address given by name resolves here).
		ua, rerr := net.ResolveUDPAddr("udp", addr)
		if rerr != nil {
			return time.Time{}, rerr
		}
		ap = ua.AddrPort()
	}
	_, err = t.udp.WriteToUDPAddrPort(b, ap)
	return time.Now(), err
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

// PacketCh implements memberlist.Transport.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", addr)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// StreamCh implements memberlist.Transport.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport: it closes the sockets and
// waits for the loops to end.
func (t *transport) Shutdown() error {
	if t.shutdown.Swap(true) {
		return nil
	}
	close(t.done)
	_ = t.tcp.Close()
	_ = t.udp.Close()
	t.wg.Wait()
	return nil
}

// acceptLoop hands memberlist each incoming stream; accept errors back
// off up to a second (as NetTransport does) so a failing socket does not
// spin.
func (t *transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Error("gossip accept", "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case t.streamCh <- conn:
		case <-t.done:
			_ = conn.Close()
			return
		}
	}
}

// readLoop hands memberlist each incoming packet, copied out of one
// reusable buffer (memberlist keeps a packet's buffer until it is
// handled).
func (t *transport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			t.log.Error("gossip read", "err", err)
			continue
		}
		if n < 1 {
			continue // memberlist needs at least the message type
		}
		p := &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: net.UDPAddrFromAddrPort(from), Timestamp: ts}
		select {
		case t.packetCh <- p:
		case <-t.done:
			return
		}
	}
}
