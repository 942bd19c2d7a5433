package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serveOK accepts TLS connections with cfg and writes "k" to each one
// that completes its handshake, so a client knows it was accepted (in
// TLS 1.3 the server's verdict on a client certificate comes after the
// client's handshake returns).
func serveOK(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				_, _ = c.Write([]byte("k"))
			}()
		}
	}()
	return lis.Addr().String()
}

// dialOK reports whether a client with cfg is served at addr.
func dialOK(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	return nil
}

func issueOpts(t *testing.T, ca *CA, opts IssueOptions) tls.Certificate {
	t.Helper()
	kp, _, err := ca.Issue(opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A rotation as one port sees it, through a real listener that is never
// restarted: a client certificate of the new CA is refused before the new
// CA is trusted, served while both are, and one of the old CA is refused
// once the old CA is dropped.
func TestBundleServerTrustChangesWithoutRestart(t *testing.T) {
	oldCA, newCA := newTestCA(t), newTestCA(t)
	b, err := NewBundle(oldCA)
	if err != nil {
		t.Fatal(err)
	}
	ctl, _ := ControlIdentity("c1")
	serverCert := issueOpts(t, oldCA, IssueOptions{Identity: ctl, Server: true, Hosts: []string{"127.0.0.1"}})
	addr := serveOK(t, b.ServerConfig(ServerTLSConfig(b.Pool(), StaticCert{serverCert}, tls.RequireAndVerifyClientCert)))

	admin := AdminIdentity()
	oldClient := issueOpts(t, oldCA, IssueOptions{Identity: admin})
	newClient := issueOpts(t, newCA, IssueOptions{Identity: admin})
	// The client trusts both throughout: this test is about the server.
	clientTrust, _ := NewBundle(oldCA, newCA.Cert)
	dial := func(c tls.Certificate) error { return dialOK(addr, clientTrust.ClientConfig(StaticCert{c}, "")) }

	if err := dialOK(addr, clientTrust.ClientConfig(nil, "")); err == nil {
		t.Fatal("a client without a certificate was served by a port that requires one")
	}
	if err := dial(oldClient); err != nil {
		t.Fatalf("old-CA client before the rotation: %v", err)
	}
	if err := dial(newClient); err == nil {
		t.Fatal("new-CA client served before the new CA is trusted")
	}
	if err := b.Set(newCA, oldCA.Cert); err != nil { // rotate start
		t.Fatal(err)
	}
	if err := dial(newClient); err != nil {
		t.Fatalf("new-CA client during the rotation: %v", err)
	}
	if err := dial(oldClient); err != nil {
		t.Fatalf("old-CA client during the rotation: %v", err)
	}
	if err := b.Set(newCA); err != nil { // rotate finish
		t.Fatal(err)
	}
	if err := dial(oldClient); err == nil {
		t.Fatal("old-CA client served after the old CA was dropped")
	}
	if err := dial(newClient); err != nil {
		t.Fatalf("new-CA client after the rotation: %v", err)
	}
	if err := b.Verify(oldClient.Leaf); !errors.Is(err, ErrUntrustedCA) {
		t.Fatalf("Verify(old-CA certificate) after finish = %v, want ErrUntrustedCA", err)
	}
	if err := b.Verify(newClient.Leaf); err != nil {
		t.Fatalf("Verify(new-CA certificate) = %v", err)
	}
}

// The client side: a server renewed under the new CA is refused by a
// client that trusts only the old one, served once the client's bundle
// has both, refused with the old CA's certificate once it is dropped; a
// certificate without server authentication (a worker's) never serves.
func TestBundleClientTrustChangesWithoutRestart(t *testing.T) {
	oldCA, newCA := newTestCA(t), newTestCA(t)
	ctl, _ := ControlIdentity("c1")
	node, _ := NodeIdentity("w1")
	anyClient, _ := NewBundle(oldCA, newCA.Cert)
	serverCfg := func(c tls.Certificate) *tls.Config {
		return anyClient.ServerConfig(ServerTLSConfig(anyClient.Pool(), StaticCert{c}, tls.RequireAndVerifyClientCert))
	}
	oldServer := serveOK(t, serverCfg(issueOpts(t, oldCA, IssueOptions{Identity: ctl, Server: true, Hosts: []string{"127.0.0.1", "c1.example"}})))
	newServer := serveOK(t, serverCfg(issueOpts(t, newCA, IssueOptions{Identity: ctl, Server: true, Hosts: []string{"127.0.0.1", "c1.example"}})))
	workerServer := serveOK(t, serverCfg(issueOpts(t, oldCA, IssueOptions{Identity: node, Hosts: []string{"127.0.0.1"}})))

	b, _ := NewBundle(oldCA)
	me := StaticCert{issueOpts(t, oldCA, IssueOptions{Identity: AdminIdentity()})}
	cfg := b.ClientConfig(me, "")
	if err := dialOK(oldServer, cfg); err != nil {
		t.Fatalf("old-CA server before the rotation: %v", err)
	}
	if err := dialOK(newServer, cfg); err == nil {
		t.Fatal("new-CA server verified before the new CA is trusted")
	}
	if err := dialOK(workerServer, cfg); err == nil {
		t.Fatal("a certificate without server authentication (a worker's) passed as a server")
	}
	if err := dialOK(oldServer, b.ClientConfig(me, "other.example")); err == nil {
		t.Fatal("a server name the certificate does not carry was accepted")
	}
	if err := dialOK(oldServer, b.ClientConfig(me, "c1.example")); err != nil {
		t.Fatalf("server name the certificate carries: %v", err)
	}
	_ = b.Set(newCA, oldCA.Cert)
	for _, addr := range []string{oldServer, newServer} {
		if err := dialOK(addr, cfg); err != nil { // the same config, not rebuilt
			t.Fatalf("server %s during the rotation: %v", addr, err)
		}
	}
	_ = b.Set(newCA)
	if err := dialOK(oldServer, cfg); err == nil {
		t.Fatal("old-CA server verified after the old CA was dropped")
	}
	if err := dialOK(newServer, cfg); err != nil {
		t.Fatalf("new-CA server after the rotation: %v", err)
	}
}

// The API port's split still routes by what the client proved, against
// the set in force now.
func TestSplitListenerFollowsBundle(t *testing.T) {
	oldCA, newCA := newTestCA(t), newTestCA(t)
	b, _ := NewBundle(oldCA)
	ctl, _ := ControlIdentity("c1")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.ServerConfig(ServerTLSConfig(b.Pool(), StaticCert{issueOpts(t, oldCA, IssueOptions{Identity: ctl, Server: true, Hosts: []string{"127.0.0.1"}})}, tls.VerifyClientCertIfGiven))
	split, err := NewSplitListener(lis, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer split.Close()
	routed := make(chan string, 4)
	for side, l := range map[string]net.Listener{"authenticated": split.Authenticated(), "anonymous": split.Anonymous()} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				routed <- side
				_, _ = c.Write([]byte("k"))
				c.Close()
			}
		}()
	}
	clientTrust, _ := NewBundle(oldCA, newCA.Cert)
	newClient := StaticCert{issueOpts(t, newCA, IssueOptions{Identity: AdminIdentity()})}
	if err := dialOK(split.Addr().String(), clientTrust.ClientConfig(newClient, "")); err == nil {
		t.Fatal("new-CA client reached the API port before the new CA is trusted")
	}
	_ = b.Set(newCA, oldCA.Cert)
	if err := dialOK(split.Addr().String(), clientTrust.ClientConfig(newClient, "")); err != nil {
		t.Fatalf("new-CA client during the rotation: %v", err)
	}
	if side := <-routed; side != "authenticated" {
		t.Fatalf("new-CA client routed to the %s side", side)
	}
}

func TestBundleSaveLoad(t *testing.T) {
	oldCA, newCA := newTestCA(t), newTestCA(t)
	b, _ := NewBundle(newCA, oldCA.Cert, newCA.Cert)
	if n := len(b.Trusted()); n != 2 {
		t.Fatalf("trusted set has %d CAs, want 2 (duplicates dropped)", n)
	}
	dir := filepath.Join(t.TempDir(), "pki")
	if err := b.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Signer().Pin() != newCA.Pin() || got.Signer().Key == nil {
		t.Fatal("loaded bundle's signer is not the new CA with its key")
	}
	if tr := got.Trusted(); len(tr) != 2 || PinOf(tr[1]) != oldCA.Pin() {
		t.Fatalf("loaded bundle trusts %d CAs, want the new and the old", len(tr))
	}
	if st, _ := os.Stat(filepath.Join(dir, CAKeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v", st.Mode().Perm())
	}
	old := issueOpts(t, oldCA, IssueOptions{Identity: AdminIdentity()})
	if got.IssuedBySigner(old.Leaf) || !got.IssuedBySigner(issueOpts(t, newCA, IssueOptions{Identity: AdminIdentity()}).Leaf) {
		t.Fatal("IssuedBySigner does not tell the old CA's certificates from the new one's")
	}
}
