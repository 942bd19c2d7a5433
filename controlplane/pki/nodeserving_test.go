package pki

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// handshake runs one real TLS handshake over loopback between server and
// client configs and returns the client's error, or the server's.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	serverErr := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		serverErr <- c.(*tls.Conn).Handshake()
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(), client)
	if err == nil {
		// TLS 1.3: the client finishes before the server has checked it.
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		if serr := <-serverErr; serr != nil {
			return serr
		}
		if err != nil && !strings.Contains(err.Error(), "EOF") {
			return err
		}
		return nil
	}
	return err
}

// A worker's serving certificate is good for its stream port only: a
// control node dialling it as node w1 at its address gets through; as
// another node, or at another address, it is refused; a client looking
// for a control node refuses it; and its port answers control nodes only
// (not users, not other workers, not itself).
func TestWorkerServingCertificateOnlyForItsStreamPort(t *testing.T) {
	ca := newTestCA(t)
	bundle, err := NewBundle(ca)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(id Identity, server bool, hosts ...string) StaticCert {
		kp, _, err := ca.Issue(IssueOptions{Identity: id, Server: server, Hosts: hosts})
		if err != nil {
			t.Fatal(err)
		}
		c, err := kp.TLS()
		if err != nil {
			t.Fatal(err)
		}
		return StaticCert{c}
	}
	w1ID, _ := NodeIdentity("w1")
	w2ID, _ := NodeIdentity("w2")
	c1ID, _ := ControlIdentity("c1")
	viewer, _ := UserIdentity("bob", RoleViewer)
	w1 := issue(w1ID, true, "127.0.0.1")
	w2 := issue(w2ID, true, "127.0.0.2")
	c1 := issue(c1ID, true, "127.0.0.1")
	lo := netip.MustParseAddr("127.0.0.1")

	port := bundle.NodeStreamServerConfig(w1)
	if err := handshake(t, port, bundle.NodeClientConfig(c1, "w1", lo)); err != nil {
		t.Fatalf("control node dialling w1's stream port: %v", err)
	}
	if err := handshake(t, port, bundle.NodeClientConfig(c1, "w9", lo)); err == nil || !strings.Contains(err.Error(), `node "w9" was expected`) {
		t.Fatalf("control node expecting w9 where w1 answers: %v, want refused", err)
	}
	if err := handshake(t, bundle.NodeStreamServerConfig(w2), bundle.NodeClientConfig(c1, "w2", lo)); err == nil {
		t.Fatal("w2's certificate (for 127.0.0.2) accepted at 127.0.0.1")
	}
	for name, src := range map[string]StaticCert{"another worker": w2, "the worker itself": w1, "a viewer": issue(viewer, false), "the admin": issue(AdminIdentity(), false)} {
		if err := handshake(t, port, bundle.NodeClientConfig(src, "w1", lo)); err == nil {
			t.Fatalf("%s reached w1's stream port", name)
		} else {
			t.Logf("%s refused: %v", name, err)
		}
	}
	// A client of the API (looking for a control node) refuses a worker.
	apiPort := bundle.ServerConfig(ServerTLSConfig(nil, w1, tls.RequireAndVerifyClientCert))
	if err := handshake(t, apiPort, bundle.ClientConfig(c1, "")); err == nil || !strings.Contains(err.Error(), "a worker, where a control node was expected") {
		t.Fatalf("a worker posing as a control node: %v, want refused", err)
	}
	if err := handshake(t, bundle.ServerConfig(ServerTLSConfig(nil, c1, tls.RequireAndVerifyClientCert)), bundle.ClientConfig(w1, "")); err != nil {
		t.Fatalf("a worker dialling a control node: %v", err)
	}
}
