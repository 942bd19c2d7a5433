package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// dropProxy forwards loopback TCP connections to one server. Armed with a
// condition, it holds the next bytes the server sends, waits until the
// condition holds (the server has applied the request) and then closes
// both sides: the client's request arrived and took effect, its answer is
// lost with the connection.
type dropProxy struct {
	t      *testing.T
	lis    net.Listener
	target string
	mu     sync.Mutex
	armed  func() bool
	conns  []net.Conn
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{t: t, lis: lis, target: target}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *dropProxy) addr() string { return p.lis.Addr().String() }

func (p *dropProxy) arm(applied func() bool) {
	p.mu.Lock()
	p.armed = applied
	p.mu.Unlock()
}

func (p *dropProxy) close() {
	p.lis.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *dropProxy) accept() {
	for {
		client, err := p.lis.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(server, client); server.Close() }()
		go p.serverToClient(server, client)
	}
}

func (p *dropProxy) serverToClient(server, client net.Conn) {
	defer client.Close()
	defer server.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		applied := p.armed
		p.armed = nil
		p.mu.Unlock()
		if applied != nil {
			if !testutil.Eventually(20*time.Second, applied) {
				p.t.Errorf("the server did not apply the request within 20 s")
			}
			return // drop the answer with the connection
		}
		if _, err := client.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestWriteAnswerLostIsNeverReportedAsFailed drops the connection after the
// API server has received and applied a write. A create with an
// idempotency key comes back as the created object; one without, and a
// compare-and-set update, come back ErrOutcomeUnknown — never AlreadyExists
// or Conflict for the caller's own successful write; a delete comes back
// with its outcome, read from the object. A write whose
// connection was never established is sent to the next server.
func TestWriteAnswerLostIsNeverReportedAsFailed(t *testing.T) {
	c := apitest.Start(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	direct := c.MustClient(t)
	proxy := newDropProxy(t, c.Addrs()[0])
	tc, err := c.ClientTLS("admin")
	if err != nil {
		t.Fatal(err)
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS, o.LearnInterval = []string{proxy.addr()}, tc, -1
	cl, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.API().Version(ctx, &apiv1.VersionRequest{}); err != nil { // connect first
		t.Fatal(err)
	}
	exists := func(name string) func() bool {
		return func() bool {
			_, err := client.Get[*apiv1.ConfigMap](ctx, direct, "default", name)
			return err == nil
		}
	}

	t.Run("CreateWithKey", func(t *testing.T) {
		cm := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "keyed",
			Annotations: map[string]string{client.CreateIDAnnotation: "3f1c9a"}}, Data: map[string]string{"v": "1"}}
		proxy.arm(exists("keyed"))
		got, err := client.Create(ctx, cl, cm)
		if err != nil {
			t.Fatalf("create whose answer was lost: %v, want the created object", err)
		}
		if got.GetMetadata().GetName() != "keyed" || got.GetMetadata().GetUid() == "" || got.GetData()["v"] != "1" {
			t.Fatalf("create returned %v", got)
		}
	})

	t.Run("CreateWithoutKey", func(t *testing.T) {
		proxy.arm(exists("unkeyed"))
		_, err := client.Create(ctx, cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "unkeyed"}})
		if !client.IsOutcomeUnknown(err) || client.IsAlreadyExists(err) || client.IsUnavailable(err) {
			t.Fatalf("create whose answer was lost: %v, want ErrOutcomeUnknown (not AlreadyExists, not Unavailable)", err)
		}
		var oe *client.OutcomeUnknownError
		if !errors.As(err, &oe) || oe.Server != proxy.addr() {
			t.Fatalf("error does not name the server: %#v", err)
		}
	})

	t.Run("CompareAndSetUpdate", func(t *testing.T) {
		cur, err := client.Get[*apiv1.ConfigMap](ctx, cl, "default", "unkeyed")
		if err != nil {
			t.Fatal(err)
		}
		before := cur.GetMetadata().GetResourceVersion()
		cur.Data = map[string]string{"v": "2"}
		proxy.arm(func() bool {
			now, err := client.Get[*apiv1.ConfigMap](ctx, direct, "default", "unkeyed")
			return err == nil && now.GetMetadata().GetResourceVersion() != before
		})
		_, err = client.Update(ctx, cl, cur)
		if !client.IsOutcomeUnknown(err) || client.IsConflict(err) {
			t.Fatalf("update whose answer was lost: %v, want ErrOutcomeUnknown (not Conflict)", err)
		}
		now, err := client.Get[*apiv1.ConfigMap](ctx, direct, "default", "unkeyed")
		if err != nil || now.GetData()["v"] != "2" {
			t.Fatalf("the update was applied, store has %v (%v)", now.GetData(), err)
		}
	})

	// A delete can be settled by reading the object: the caller gets the
	// outcome (removed, or marked for deletion), not ErrOutcomeUnknown —
	// ctl delete -f no longer fails when leadership moves mid-delete.
	t.Run("DeleteAnswerLost", func(t *testing.T) {
		if _, err := client.Create(ctx, direct, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "doomed"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.API().Version(ctx, &apiv1.VersionRequest{}); err != nil { // reconnect first
			t.Fatal(err)
		}
		proxy.arm(func() bool { return !exists("doomed")() })
		obj, removed, err := cl.Delete(ctx, "ConfigMap", "default", "doomed", client.DeleteOptions{})
		if err != nil || !removed {
			t.Fatalf("delete whose answer was lost: removed=%v obj=%v err=%v, want removed and no error", removed, obj, err)
		}
	})

	t.Run("DeleteMarkedAnswerLost", func(t *testing.T) {
		if _, err := client.Create(ctx, direct, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "held",
			Finalizers: []string{"example.com/hold"}}}); err != nil {
			t.Fatal(err)
		}
		marked := func() bool {
			cm, err := client.Get[*apiv1.ConfigMap](ctx, direct, "default", "held")
			return err == nil && cm.GetMetadata().GetDeletionTimestamp() != ""
		}
		if _, err := cl.API().Version(ctx, &apiv1.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
		proxy.arm(marked)
		obj, removed, err := cl.Delete(ctx, "ConfigMap", "default", "held", client.DeleteOptions{})
		if err != nil || removed || obj == nil || obj.GetMetadata().GetDeletionTimestamp() == "" {
			t.Fatalf("delete (held by a finalizer) whose answer was lost: removed=%v obj=%v err=%v, want marked for deletion", removed, obj, err)
		}
		cm, err := client.Get[*apiv1.ConfigMap](ctx, direct, "default", "held")
		if err != nil {
			t.Fatal(err)
		}
		cm.Metadata.Finalizers = nil
		if _, err := client.Update(ctx, direct, cm); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("NeverSentIsRetried", func(t *testing.T) {
		dead, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		deadAddr := dead.Addr().String()
		dead.Close() // nothing listens: the connection is refused
		o := client.DefaultOptions()
		o.Servers, o.TLS, o.LearnInterval = []string{deadAddr, c.Addrs()[0]}, tc, -1
		cl2, err := client.New(o)
		if err != nil {
			t.Fatal(err)
		}
		defer cl2.Close()
		if _, err := client.Create(ctx, cl2, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "failover"}}); err != nil {
			t.Fatalf("create with the first server down: %v, want it sent to the second", err)
		}
	})
}
