package client_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// freezeProxy forwards loopback connections to a server until frozen; then
// it keeps the connections open and swallows every byte both ways, as a
// SIGSTOPped or blackholed server looks to its clients.
type freezeProxy struct {
	lis    net.Listener
	target string
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{lis: lis, target: target}
	go p.accept()
	t.Cleanup(func() {
		lis.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *freezeProxy) accept() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *freezeProxy) pipe(from, to net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			to.Close()
			return
		}
		if p.frozen.Load() {
			continue
		}
		if _, err := to.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestSilentServerCostsAReadAboutASecond: a client whose first server
// freezes under an open connection moves its reads to the next server
// within about a second (the per-attempt deadline), and the reads after
// that go straight to the server that answers.
func TestSilentServerCostsAReadAboutASecond(t *testing.T) {
	c := apitest.Start(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	proxy := newFreezeProxy(t, c.Addrs()[0])
	tc, err := c.ClientTLS("admin")
	if err != nil {
		t.Fatal(err)
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS, o.LearnInterval = []string{proxy.lis.Addr().String(), c.Addrs()[0]}, tc, -1
	cl, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := client.Get[*apiv1.Namespace](ctx, cl, "", "default"); err != nil { // through the proxy
		t.Fatal(err)
	}
	proxy.frozen.Store(true)
	for i, read := range []func(context.Context) error{
		func(ctx context.Context) error {
			_, err := client.Get[*apiv1.Namespace](ctx, cl, "", "default")
			return err
		},
		func(ctx context.Context) error {
			_, _, err := client.List[*apiv1.Namespace](ctx, cl, client.ListOptions{})
			return err
		},
	} {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		err := read(rctx)
		took := time.Since(start)
		rcancel()
		if err != nil {
			t.Fatalf("read %d with the first server frozen: %v", i, err)
		}
		limit := 1500 * time.Millisecond // the attempt deadline (1 s) and a margin
		if i > 0 {
			limit = 500 * time.Millisecond // already moved to the server that answers
		}
		if took > limit {
			t.Errorf("read %d with the first server frozen took %s, want at most %s", i, took, limit)
		}
		t.Logf("read %d with the first server frozen: %s", i, took)
	}
}
