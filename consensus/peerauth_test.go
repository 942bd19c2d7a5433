package consensus_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/integration/testutil"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// consensusConn dials a node's consensus port for gRPC as the holder of
// name's certificate.
func consensusConn(t *testing.T, c *consensustest.Cluster, addr, name string) *grpc.ClientConn {
	t.Helper()
	_, cli, err := c.PKI.TLSConfigs(name)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cli)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", a)
			if err == nil {
				_, err = nc.Write([]byte{'G'})
			}
			return nc, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// raftClient is a real Raft network transport presenting name's
// certificate.
func raftClient(t *testing.T, c *consensustest.Cluster, name string) *raft.NetworkTransport {
	t.Helper()
	_, cli, err := c.PKI.TLSConfigs(name)
	if err != nil {
		t.Fatal(err)
	}
	cli.ServerName = "127.0.0.1"
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: &dialOnlyStream{tls: cli, closed: make(chan struct{})}, MaxPool: 1, Timeout: 2 * time.Second,
		Logger: hclog.NewNullLogger()})
	t.Cleanup(func() { tr.Close() })
	return tr
}

type dialOnlyStream struct {
	tls    *tls.Config
	closed chan struct{}
	once   sync.Once
}

func (s *dialOnlyStream) Accept() (net.Conn, error) {
	<-s.closed
	return nil, net.ErrClosed
}

func (s *dialOnlyStream) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func (s *dialOnlyStream) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (s *dialOnlyStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{'R'}); err != nil {
		c.Close()
		return nil, err
	}
	return tls.Client(c, s.tls), nil
}

// appendEntries sends a stale-term AppendEntries: a member's is answered
// with the node's term (and changes nothing), anyone else's is refused.
func appendEntries(tr *raft.NetworkTransport, n *consensustest.Node) (*raft.AppendEntriesResponse, error) {
	var resp raft.AppendEntriesResponse
	err := tr.AppendEntries(raft.ServerID(n.ID), raft.ServerAddress(n.Addr), &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("probe"), Addr: []byte("127.0.0.1:1")}, Term: 0}, &resp)
	return &resp, err
}

// probe tries KV.Range, Internal.Status and a Raft AppendEntries against n
// as the holder of name's certificate and returns the three errors.
func probe(t *testing.T, c *consensustest.Cluster, n *consensustest.Node, name string) (kvErr, internalErr, raftErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn := consensusConn(t, c, n.Addr, name)
	_, kvErr = storepb.NewKVClient(conn).Range(ctx, &storepb.RangeRequest{Key: []byte("/"), Prefix: true, Stale: true})
	_, internalErr = storepb.NewInternalClient(conn).Status(ctx, &storepb.StatusRequest{})
	_, raftErr = appendEntries(raftClient(t, c, name), n)
	return kvErr, internalErr, raftErr
}

func TestConsensusPortServesCurrentMembersOnly(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	l := c.MustLeader(t)
	put(t, l.Store(), "/registry/secrets/default/s", "secret")

	for _, n := range c.Nodes {
		kvErr, inErr, raftErr := probe(t, c, n, "n1")
		if kvErr != nil || inErr != nil || raftErr != nil {
			t.Fatalf("%s: member n1 not served: KV %v, internal %v, raft %v", n.ID, kvErr, inErr, raftErr)
		}
		// Chains to the same CA but names no member: refused on all paths.
		kvErr, inErr, raftErr = probe(t, c, n, "outsider")
		if kvErr == nil || inErr == nil || raftErr == nil {
			t.Fatalf("%s: a non-member certificate was served: KV %v, internal %v, raft %v", n.ID, kvErr, inErr, raftErr)
		}
	}

	// A member is removed: its certificate is refused everywhere within a
	// second, and a connection it already had is cut.
	victim := followers(c, l)[0]
	open := storepb.NewKVClient(consensusConn(t, c, l.Addr, victim.ID))
	if _, err := open.Range(ctxT(t), &storepb.RangeRequest{Key: []byte("/"), Prefix: true, Stale: true}); err != nil {
		t.Fatalf("member %s before removal: %v", victim.ID, err)
	}
	victim.Stop()
	if err := l.Store().RemoveMember(ctxT(t), victim.ID); err != nil {
		t.Fatal(err)
	}
	removedAt := time.Now()
	for _, n := range c.Running() {
		testutil.WaitFor(t, time.Second-time.Since(removedAt), "removed member "+victim.ID+" refused by "+n.ID, func() bool {
			kvErr, inErr, raftErr := probe(t, c, n, victim.ID)
			return kvErr != nil && inErr != nil && raftErr != nil
		})
	}
	testutil.WaitFor(t, time.Second, "the removed member's open connection to be cut", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := open.Range(ctx, &storepb.RangeRequest{Key: []byte("/"), Prefix: true, Stale: true})
		return err != nil
	})
	t.Logf("removed member refused on every node %s after removal", time.Since(removedAt).Round(time.Millisecond))
	// The others still serve each other.
	for _, n := range c.Running() {
		put(t, n.Store(), "/alive/"+n.ID, "yes")
	}
}

// TestConsensusClientChecksTheServer: a node dialing a peer refuses a
// server whose certificate does not name the member at that address.
func TestConsensusClientChecksTheServer(t *testing.T) {
	c := consensustest.Start(t, 1, nil)
	l := c.MustLeader(t)
	for _, tc := range []struct {
		cert       string
		handshakes bool
	}{{"outsider", false}, {"n4", true}} {
		srv, _, err := c.PKI.TLSConfigs(tc.cert)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var done atomic.Int32
		go func() {
			for {
				raw, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer raw.Close()
					var b [1]byte
					if _, err := io.ReadFull(raw, b[:]); err != nil {
						return
					}
					if tls.Server(raw, srv).HandshakeContext(context.Background()) == nil {
						done.Add(1)
					}
				}()
			}
		}()
		// The leader replicates to the new (non-voting) member at once.
		if _, err := l.Store().AddMember(ctxT(t), "n4", ln.Addr().String(), true); err != nil {
			t.Fatal(err)
		}
		if tc.handshakes {
			testutil.WaitFor(t, 5*time.Second, "the leader to handshake with a server named n4", func() bool { return done.Load() > 0 })
		} else {
			// Positive signal that the leader did try: give it a few
			// replication attempts, then no handshake may have completed.
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) && done.Load() == 0 {
				time.Sleep(50 * time.Millisecond)
			}
			if n := done.Load(); n != 0 {
				t.Fatalf("the leader completed %d TLS handshakes with a server presenting %q as member n4", n, tc.cert)
			}
		}
		if err := l.Store().RemoveMember(ctxT(t), "n4"); err != nil {
			t.Fatal(err)
		}
		ln.Close()
	}
}

// TestJoiningNodeAcceptsOnlyItsJoinMembers: before its first configuration
// arrives, a node added by the leader serves only the members it was told
// about at join.
func TestJoiningNodeAcceptsOnlyItsJoinMembers(t *testing.T) {
	c := consensustest.Start(t, 1, nil)
	addr, err := consensustest.FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	srv, cli, err := c.PKI.TLSConfigs("n2")
	if err != nil {
		t.Fatal(err)
	}
	cfg := consensustest.FastConfig()
	cfg.ID, cfg.DataDir, cfg.BindAddr = "n2", filepath.Join(t.TempDir(), "n2"), addr
	cfg.ServerTLS, cfg.ClientTLS, cfg.PeerIdentity = srv, cli, consensustest.CommonNameIdentity
	cfg.JoinMembers = []string{"n1"}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := consensus.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	joining := &consensustest.Node{ID: "n2", Addr: addr}
	if kvErr, _, raftErr := probe(t, c, joining, "n3"); kvErr == nil || raftErr == nil {
		t.Fatalf("an unconfigured node served n3, not among its join members: KV %v, raft %v", kvErr, raftErr)
	}
	if kvErr, inErr, raftErr := probe(t, c, joining, "n1"); kvErr != nil || inErr != nil || raftErr != nil {
		t.Fatalf("an unconfigured node refused its join member n1: KV %v, internal %v, raft %v", kvErr, inErr, raftErr)
	}
	// Once added, it has a configuration and the usual rule applies.
	if _, err := c.Nodes[0].Store().AddMember(ctxT(t), "n2", addr, false); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "n2 to receive the configuration", func() bool { return len(s.MemberIDs()) == 2 })
	if kvErr, _, _ := probe(t, c, joining, "n3"); kvErr == nil {
		t.Fatal("n3 served after n2 was configured without it")
	}
}
