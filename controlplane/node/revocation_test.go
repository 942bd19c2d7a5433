package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/integration/testutil"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// testControl is one in-process control node of a securityCluster.
type testControl struct {
	name   string
	cfg    Config
	cancel context.CancelFunc
	done   chan error
}

func (n *testControl) api() string   { return hostPort("127.0.0.1", n.cfg.APIPort) }
func (n *testControl) store() string { return hostPort("127.0.0.1", n.cfg.RaftPort) }

// stop ends the node and waits for it; its error is not the test's concern
// (a removed member may end with one).
func (n *testControl) stop() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
		n.cancel = nil
	}
}

// controlKeyPairOf is the control node's own certificate and key.
func (n *testControl) keyPair(t *testing.T) tls.Certificate {
	t.Helper()
	kp, err := pki.LoadKeyPair(filepath.Join(n.cfg.DataDir, PKIDir), controlKeyPair)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

type securityCluster struct {
	nodes []*testControl
	ca    *pki.CA
	admin *tls.Config
}

func startControlNode(t *testing.T, name string, run func(ctx context.Context, cfg Config) error) (*testControl, *lockedBuffer) {
	cfg, out := testConfig(t, filepath.Join(t.TempDir(), name), name)
	ctx, cancel := context.WithCancel(context.Background())
	n := &testControl{name: name, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- run(ctx, cfg) }()
	t.Cleanup(n.stop)
	return n, out
}

// newSecurityCluster runs three control nodes in this process: c1 by
// `ctl init`, c2 and c3 by `ctl join --control` with the printed token.
func newSecurityCluster(t *testing.T) *securityCluster {
	first, out := startControlNode(t, "c1", Init)
	var token, addr string
	re := regexp.MustCompile(`ctl join --control --token (\S+) (\S+)`)
	testutil.WaitFor(t, 30*time.Second, "init to print the control join command", func() bool {
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			token, addr = m[1], m[2]
		}
		return m != nil
	})
	c := &securityCluster{nodes: []*testControl{first}}
	for _, name := range []string{"c2", "c3"} {
		n, _ := startControlNode(t, name, func(ctx context.Context, cfg Config) error {
			return Join(ctx, cfg, JoinOptions{Address: addr, Token: token, Control: true})
		})
		c.nodes = append(c.nodes, n)
	}
	var err error
	if c.ca, err = pki.LoadCA(filepath.Join(first.cfg.DataDir, PKIDir)); err != nil {
		t.Fatal(err)
	}
	cc, err := client.LoadConfig(filepath.Join(first.cfg.DataDir, AdminConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if c.admin, err = cc.TLS(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "three healthy voters", func() bool {
		resp, err := adminService(t, first.api(), c.admin).ListMembers(ctxShort(t), &adminv1.ListMembersRequest{})
		if err != nil || len(resp.Members) != 3 {
			return false
		}
		for _, m := range resp.Members {
			if !m.Voter || !m.Healthy {
				return false
			}
		}
		return true
	})
	return c
}

func ctxShort(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// issue is a real certificate of the cluster CA for id, as `ctl user
// create` or a worker's join would get.
func (c *securityCluster) issue(t *testing.T, id pki.Identity) *tls.Config {
	t.Helper()
	kp, _, err := c.ca.Issue(pki.IssueOptions{Identity: id, Server: id.Role == pki.RoleNode || id.Role == pki.RoleControl, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c.clientTLS(cert)
}

func (c *securityCluster) clientTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: c.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
}

func grpcConn(t *testing.T, addr string, tc *tls.Config, dial func(context.Context, string) (net.Conn, error)) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc.Clone()))}
	if dial != nil {
		opts = append(opts, grpc.WithContextDialer(dial))
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func adminService(t *testing.T, addr string, tc *tls.Config) adminv1.AdminClient {
	return adminv1.NewAdminClient(grpcConn(t, addr, tc, nil))
}

// apiServed reports whether the API port at addr serves the holder of tc
// (a viewer's List of namespaces is allowed to every identity but a node;
// refusal at the handshake is Unavailable).
func apiServed(t *testing.T, addr string, tc *tls.Config) error {
	_, err := apiv1.NewAPIClient(grpcConn(t, addr, tc, nil)).List(ctxShort(t), &apiv1.ListRequest{Kind: "Namespace"})
	if status.Code(err) == codes.PermissionDenied {
		return nil // past the handshake: served, and the authorizer decided
	}
	return err
}

// storePort dials the consensus port's gRPC side.
func storePort(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		_, err = c.Write([]byte{'G'})
	}
	return c, err
}

// probeStorePort tries KV.Range over the Secrets, Internal.Status and a Raft
// AppendEntries (stale term: answered by a member's peer and harmless) on
// the store port at addr as the holder of tc. nil: all three served.
func probeStorePort(t *testing.T, addr string, tc *tls.Config) (kvErr, internalErr, raftErr error) {
	conn := grpcConn(t, addr, tc, storePort)
	_, kvErr = storepb.NewKVClient(conn).Range(ctxShort(t), &storepb.RangeRequest{Key: []byte("/registry/secrets/"), Prefix: true, Stale: true})
	_, internalErr = storepb.NewInternalClient(conn).Status(ctxShort(t), &storepb.StatusRequest{})
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: raftDialer{tls: tc, closed: make(chan struct{})}, MaxPool: 1, Timeout: 2 * time.Second, Logger: hclog.NewNullLogger()})
	defer tr.Close()
	var resp raft.AppendEntriesResponse
	raftErr = tr.AppendEntries("peer", raft.ServerAddress(addr), &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("probe"), Addr: []byte("127.0.0.1:1")}}, &resp)
	return kvErr, internalErr, raftErr
}

func refusedEverywhere(kvErr, internalErr, raftErr error) bool {
	return kvErr != nil && internalErr != nil && raftErr != nil
}

// raftDialer is a raft.StreamLayer that only dials, with a client cert.
type raftDialer struct {
	tls    *tls.Config
	closed chan struct{}
}

func (d raftDialer) Accept() (net.Conn, error) { <-d.closed; return nil, net.ErrClosed }
func (d raftDialer) Close() error              { close(d.closed); return nil }
func (raftDialer) Addr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (d raftDialer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{'R'}); err != nil {
		c.Close()
		return nil, err
	}
	return tls.Client(c, d.tls.Clone()), nil
}

// TestStorePortAndRevocation: with real certificates through the real
// ports of a three-node cluster, the store port serves current control
// members only, revocations reach every node within a second, and only
// admins may revoke.
func TestStorePortAndRevocation(t *testing.T) {
	c := newSecurityCluster(t)
	viewer := c.issue(t, must(pki.UserIdentity("bob", pki.RoleViewer)))
	adminUser := c.issue(t, must(pki.UserIdentity("alice", pki.RoleAdmin)))
	worker := c.issue(t, must(pki.NodeIdentity("w1")))
	member := c.clientTLS(c.nodes[1].keyPair(t))
	// Names equal to a member's id, in other roles: the role decides.
	workerNamedC2 := c.issue(t, must(pki.NodeIdentity("c2")))
	viewerNamedC1 := c.issue(t, must(pki.UserIdentity("c1", pki.RoleViewer)))

	t.Run("StorePortServesControlMembersOnly", func(t *testing.T) {
		for _, n := range c.nodes {
			if kv, in, rf := probeStorePort(t, n.store(), member); kv != nil || in != nil || rf != nil {
				t.Fatalf("%s: member c2 not served on the store port: KV %v, internal %v, raft %v", n.name, kv, in, rf)
			}
			for name, tc := range map[string]*tls.Config{"viewer": viewer, "admin user": adminUser, "bootstrap admin": c.admin, "worker": worker,
				"worker named c2": workerNamedC2, "viewer named c1": viewerNamedC1} {
				if kv, in, rf := probeStorePort(t, n.store(), tc); !refusedEverywhere(kv, in, rf) {
					t.Errorf("%s: the %s was served on the store port: KV %v, internal %v, raft %v", n.name, name, kv, in, rf)
				}
			}
		}
	})

	t.Run("RevokeVerbsAreForAdminsOnly", func(t *testing.T) {
		for name, tc := range map[string]*tls.Config{"viewer": viewer, "worker": worker} {
			a := adminService(t, c.nodes[0].api(), tc)
			if _, err := a.RevokeUser(ctxShort(t), &adminv1.RevokeIdentityRequest{Name: "alice"}); status.Code(err) != codes.PermissionDenied {
				t.Errorf("the %s revoking a user: %v, want PermissionDenied", name, err)
			}
			if _, err := a.RevokeNode(ctxShort(t), &adminv1.RevokeIdentityRequest{Name: "w1"}); status.Code(err) != codes.PermissionDenied {
				t.Errorf("the %s revoking a node: %v, want PermissionDenied", name, err)
			}
		}
		if _, err := adminService(t, c.nodes[0].api(), c.admin).RevokeUser(ctxShort(t), &adminv1.RevokeIdentityRequest{Name: "Not_A_Name"}); status.Code(err) != codes.InvalidArgument ||
			!strings.Contains(err.Error(), "name") {
			t.Errorf("revoking an invalid name: %v, want InvalidArgument naming the field", err)
		}
		// Nothing was revoked by the refused calls.
		if err := apiServed(t, c.nodes[0].api(), adminUser); err != nil {
			t.Fatalf("alice refused after refused revocations: %v", err)
		}
	})

	t.Run("RevokedUserAndNodeRefusedEverywhereWithinASecond", func(t *testing.T) {
		// An open connection of alice's, to be cut.
		open := apiv1.NewAPIClient(grpcConn(t, c.nodes[2].api(), adminUser, nil))
		if _, err := open.List(ctxShort(t), &apiv1.ListRequest{Kind: "Namespace"}); err != nil {
			t.Fatalf("alice before revocation: %v", err)
		}
		for _, n := range c.nodes {
			if err := apiServed(t, n.api(), adminUser); err != nil {
				t.Fatalf("%s: alice before revocation: %v", n.name, err)
			}
		}
		admin := adminService(t, c.nodes[0].api(), c.admin)
		rec, err := admin.RevokeUser(ctxShort(t), &adminv1.RevokeIdentityRequest{Name: "alice", Reason: "laptop lost"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RevokeNode(ctxShort(t), &adminv1.RevokeIdentityRequest{Name: "w1"}); err != nil {
			t.Fatal(err)
		}
		revoked := time.Now()
		for _, n := range c.nodes {
			testutil.WaitFor(t, time.Second-time.Since(revoked), "alice and node w1 refused by "+n.name, func() bool {
				return apiServed(t, n.api(), adminUser) != nil && apiServed(t, n.api(), worker) != nil
			})
		}
		testutil.WaitFor(t, time.Second-time.Since(revoked), "alice's open connection to be cut", func() bool {
			_, err := open.List(ctxShort(t), &apiv1.ListRequest{Kind: "Namespace"})
			return err != nil
		})
		t.Logf("revoked user and node refused on every control node %s after the revocation", time.Since(revoked).Round(time.Millisecond))
		// Others are still served; a certificate issued after the
		// revocation (the user created again) is served.
		// Certificates carry their issue time to the second, and one
		// issued in the second of the revocation counts as covered.
		testutil.WaitFor(t, 2*time.Second, "the second after the revocation", func() bool {
			return time.Now().Truncate(time.Second).After(rec.RevokedAt.AsTime())
		})
		again := c.issue(t, must(pki.UserIdentity("alice", pki.RoleAdmin)))
		for _, n := range c.nodes {
			if err := apiServed(t, n.api(), viewer); err != nil {
				t.Fatalf("%s: viewer refused after alice's revocation: %v", n.name, err)
			}
			if err := apiServed(t, n.api(), again); err != nil {
				t.Fatalf("%s: alice's certificate issued after the revocation refused: %v", n.name, err)
			}
		}
	})

	t.Run("RemovedMemberRefusedEverywhereWithinASecond", func(t *testing.T) {
		gone := c.nodes[2]
		goneTLS := c.clientTLS(gone.keyPair(t))
		// Its own certificate, and one it could sign itself with the CA
		// key it keeps.
		selfSigned := c.issue(t, must(pki.ControlIdentity(gone.name)))
		// A member cannot remove itself (it could not record the
		// revocation once out): Unavailable sends ctl to the next server.
		if _, err := adminService(t, gone.api(), c.admin).RemoveMember(ctxShort(t), &adminv1.RemoveMemberRequest{Id: gone.name}); status.Code(err) != codes.Unavailable ||
			!strings.Contains(err.Error(), "cannot remove itself") {
			t.Fatalf("member removing itself: %v, want Unavailable saying to ask another", err)
		}
		// It keeps running and trying to talk while another removes it.
		if _, err := adminService(t, c.nodes[0].api(), c.admin).RemoveMember(ctxShort(t), &adminv1.RemoveMemberRequest{Id: gone.name}); err != nil {
			t.Fatal(err)
		}
		removed := time.Now()
		defer gone.stop()
		for _, n := range c.nodes[:2] {
			testutil.WaitFor(t, time.Second-time.Since(removed), gone.name+" refused on both ports of "+n.name, func() bool {
				return refusedEverywhere(probeStorePort(t, n.store(), goneTLS)) && apiServed(t, n.api(), goneTLS) != nil
			})
			if !refusedEverywhere(probeStorePort(t, n.store(), selfSigned)) || apiServed(t, n.api(), selfSigned) == nil {
				t.Errorf("%s: a fresh certificate for removed member %s was served", n.name, gone.name)
			}
		}
		t.Logf("removed member refused on every control node %s after removal", time.Since(removed).Round(time.Millisecond))
		// The two left still serve each other and the admin.
		if kv, in, rf := probeStorePort(t, c.nodes[0].store(), c.clientTLS(c.nodes[1].keyPair(t))); kv != nil || in != nil || rf != nil {
			t.Fatalf("member c2 not served after c3's removal: %v %v %v", kv, in, rf)
		}
		if _, err := adminService(t, c.nodes[1].api(), c.admin).ListMembers(ctxShort(t), &adminv1.ListMembersRequest{}); err != nil {
			t.Fatal(err)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("must: %v", err))
	}
	return v
}
