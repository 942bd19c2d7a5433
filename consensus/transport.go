package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One port carries both Raft's streams and the internal gRPC service
// (forwarding, read index, status): the first byte of a connection says which.
// Peers then need only each other's Raft address, and both paths share the
// same mutual TLS, the same peer check (peerGuard: control members only)
// and the same fault injection. The mux itself runs every TLS handshake,
// both paths and both directions, so no connection escapes the guard.
const (
	connRaft byte = 'R'
	connRPC  byte = 'G'
	// muxHeaderTimeout bounds how long an accepted connection may take to
	// send its type byte.
	muxHeaderTimeout = 5 * time.Second
)

// ErrIsolated is returned by dials while a NetworkFault isolates the node.
var ErrIsolated = errors.New("network fault: node isolated")

// mux splits one listener into a Raft stream layer and a gRPC listener.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	serverTLS *tls.Config
	clientTLS *tls.Config
	guard     *peerGuard
	fault     *NetworkFault
	log       *slog.Logger

	raftCh chan net.Conn
	rpcCh  chan net.Conn
	done   chan struct{}
	once   sync.Once
}

func newMux(ln net.Listener, advertise string, serverTLS, clientTLS *tls.Config, guard *peerGuard, fault *NetworkFault, log *slog.Logger) (*mux, error) {
	adv := ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	m := &mux{ln: ln, advertise: adv, serverTLS: guard.guard(serverTLS), clientTLS: guard.guard(clientTLS), guard: guard, fault: fault, log: log,
		raftCh: make(chan net.Conn), rpcCh: make(chan net.Conn), done: make(chan struct{})}
	go m.serve()
	return m, nil
}

func (m *mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.log.Error("consensus listener failed; node is deaf until restart", "err", err)
			return
		}
		go m.route(c)
	}
}

func (m *mux) route(c net.Conn) {
	if m.fault.blocked() {
		_ = c.Close()
		return
	}
	c = m.fault.track(c)
	_ = c.SetReadDeadline(time.Now().Add(muxHeaderTimeout))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var (
		ch   chan net.Conn
		kind string
	)
	switch b[0] {
	case connRaft:
		ch, kind = m.raftCh, "raft"
	case connRPC:
		ch, kind = m.rpcCh, "grpc" // served with handshakenCreds
	default:
		m.log.Warn("consensus port: unknown connection type, closing", "remote", c.RemoteAddr(), "byte", b[0])
		_ = c.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), muxHeaderTimeout)
	gc, err := m.guard.handshake(ctx, tls.Server(c, m.serverTLS), "inbound", kind)
	cancel()
	if err != nil {
		return
	}
	select {
	case ch <- gc:
	case <-m.done:
		_ = gc.Close()
	}
}

func (m *mux) close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		err = m.ln.Close()
	})
	return err
}

// dial opens a connection of the given type to a peer: TCP, the type
// byte, then TLS, the server checked by the guard like an inbound peer.
func (m *mux) dial(ctx context.Context, addr string, kind byte) (*guardedConn, error) {
	if m.fault.blocked() {
		return nil, ErrIsolated
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c = m.fault.track(c)
	if _, err := c.Write([]byte{kind}); err != nil {
		_ = c.Close()
		return nil, err
	}
	name := "grpc"
	if kind == connRaft {
		name = "raft"
	}
	gc, err := m.guard.handshake(ctx, tls.Client(c, m.clientTLSFor(addr)), "outbound", name)
	if err != nil {
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return gc, nil
}

// clientTLSFor returns the client TLS config for a peer address, naming the
// host as server name when the config does not fix one.
func (m *mux) clientTLSFor(addr string) *tls.Config {
	cfg := m.clientTLS.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	return cfg
}

// raftLayer is the raft.StreamLayer over the mux.
type raftLayer struct{ m *mux }

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

func (l raftLayer) Close() error   { return l.m.close() }
func (l raftLayer) Addr() net.Addr { return l.m.advertise }

func (l raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := l.m.dial(ctx, string(address), connRaft)
	if err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}
	return c, nil
}

// rpcListener is the gRPC side of the mux.
type rpcListener struct{ m *mux }

func (l rpcListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.rpcCh:
		return c, nil
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}
func (l rpcListener) Close() error   { return nil } // the mux owns the socket
func (l rpcListener) Addr() net.Addr { return l.m.advertise }

// NetworkFault cuts a node off the network for tests: while isolated, its
// dials fail, connections to it are dropped on arrival, and every open
// connection is closed. A nil *NetworkFault is a healthy network.
type NetworkFault struct {
	mu       sync.Mutex
	isolated bool
	conns    map[*trackedConn]struct{}
	// thawed is nil while the node's connections flow; while frozen it is
	// an open channel that Thaw closes.
	thawed chan struct{}
}

// Freeze makes the node silent without closing anything, as a process
// stopped with SIGSTOP or a blackholed link looks to its peers: open
// connections stay up but carry nothing either way until Thaw.
func (f *NetworkFault) Freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawed == nil {
		f.thawed = make(chan struct{})
	}
}

// Thaw lets a frozen node's connections carry data again.
func (f *NetworkFault) Thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawed != nil {
		close(f.thawed)
		f.thawed = nil
	}
}

// waitThawed blocks while the node is frozen.
func (f *NetworkFault) waitThawed() {
	f.mu.Lock()
	ch := f.thawed
	f.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// Isolate cuts the node off and closes its open connections.
func (f *NetworkFault) Isolate() {
	f.mu.Lock()
	f.isolated = true
	open := make([]*trackedConn, 0, len(f.conns))
	for c := range f.conns {
		open = append(open, c)
	}
	f.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
}

// Heal reconnects the node.
func (f *NetworkFault) Heal() {
	f.mu.Lock()
	f.isolated = false
	f.mu.Unlock()
}

func (f *NetworkFault) blocked() bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isolated
}

func (f *NetworkFault) track(c net.Conn) net.Conn {
	if f == nil {
		return c
	}
	tc := &trackedConn{Conn: c, f: f}
	f.mu.Lock()
	if f.isolated {
		// Isolated while this connection was being dialed or accepted:
		// Isolate did not see it, so close it here or it would outlive the
		// cut (seen as a leader that kept one follower through it).
		f.mu.Unlock()
		_ = c.Close()
		return c
	}
	if f.conns == nil {
		f.conns = map[*trackedConn]struct{}{}
	}
	f.conns[tc] = struct{}{}
	f.mu.Unlock()
	return tc
}

type trackedConn struct {
	net.Conn
	f *NetworkFault
}

// Read delivers what arrived only once the node is not frozen.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.f.waitThawed()
	return n, err
}

// Write sends nothing while the node is frozen.
func (c *trackedConn) Write(p []byte) (int, error) {
	c.f.waitThawed()
	return c.Conn.Write(p)
}

func (c *trackedConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}
