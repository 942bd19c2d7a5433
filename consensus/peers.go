package consensus

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// peerConnectTimeout bounds how long a forward waits for a connection to
// the leader before it retries (the leader may have just changed).
const peerConnectTimeout = time.Second

// peerMaxReconnectDelay caps the pause between attempts to reconnect to a
// peer.
const peerMaxReconnectDelay = time.Second

// peerPool keeps one gRPC connection per peer address over the mux.
type peerPool struct {
	m     *mux
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerPool(m *mux) *peerPool { return &peerPool{m: m, conns: map[string]*grpc.ClientConn{}} }

func (p *peerPool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(handshakenCreds{}),
		// gRPC's default reconnect backoff grows to 2 minutes: a peer
		// back after a partition stayed unreachable for this node's
		// forwards and status polls (ctl members showed it unhealthy)
		// long after Raft reached it again.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: peerMaxReconnectDelay},
			MinConnectTimeout: peerConnectTimeout,
		}),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return p.m.dial(ctx, a, connRPC)
		}))
	if err != nil {
		return nil, fmt.Errorf("connect to peer %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// readyConn returns the connection once it is ready, or an error if it
// cannot be made ready within peerConnectTimeout.
func (p *peerPool) readyConn(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerConnectTimeout)
	defer cancel()
	for {
		st := c.GetState()
		if st == connectivity.Ready {
			return c, nil
		}
		if st == connectivity.Idle {
			c.Connect()
		}
		if !c.WaitForStateChange(ctx, st) {
			return nil, fmt.Errorf("peer %s not reachable (%s)", addr, st)
		}
	}
}

func (p *peerPool) readyInternal(ctx context.Context, addr string) (storepb.InternalClient, error) {
	c, err := p.readyConn(ctx, addr)
	if err != nil {
		return nil, err
	}
	return storepb.NewInternalClient(c), nil
}

func (p *peerPool) internal(addr string) (storepb.InternalClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return storepb.NewInternalClient(c), nil
}

func (p *peerPool) cluster(ctx context.Context, addr string) (storepb.ClusterClient, error) {
	c, err := p.readyConn(ctx, addr)
	if err != nil {
		return nil, err
	}
	return storepb.NewClusterClient(c), nil
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		_ = c.Close()
		delete(p.conns, a)
	}
}
