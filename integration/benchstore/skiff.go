package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// connTypeGRPC is the consensus port's connection-type byte for gRPC
// (consensus/transport.go): it precedes the TLS handshake.
const connTypeGRPC byte = 'G'

// skiffSystem is a three-node Skiff store cluster driven over gRPC.
type skiffSystem struct {
	cluster *consensustest.Cluster
	conns   []*grpc.ClientConn
	kv      []storepb.KVClient
	leader  string
}

// startSkiff starts nodes in-process nodes under dir, tuned by tune, and
// opens connsPerNode gRPC connections to each node's consensus port with a
// client certificate from the cluster's PKI.
func startSkiff(dir string, nodes, connsPerNode int, tune func(*consensus.Config)) (*skiffSystem, error) {
	c, err := consensustest.NewCluster(consensustest.Options{
		Nodes: nodes, BaseDir: dir, Tune: tune,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, fmt.Errorf("start skiff cluster: %w", err)
	}
	s := &skiffSystem{cluster: c}
	leader, err := c.WaitLeader(20 * time.Second)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("skiff cluster: %w", err)
	}
	s.leader = leader.ID
	// The consensus port serves current members only: the benchmark's
	// clients present a certificate of the first member, as a tool run on
	// that control node would.
	_, clientTLS, err := c.PKI.TLSConfigs(c.Nodes[0].ID)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	// Connection j goes to node j%nodes, so clients spread the same way as
	// etcd's (see clientFor).
	for j := 0; j < connsPerNode*len(c.Nodes); j++ {
		addr := c.Nodes[j%len(c.Nodes)].Addr
		conn, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(credentials.NewTLS(clientTLS.Clone())),
			grpc.WithContextDialer(dialConsensusGRPC))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("grpc client for %s: %w", addr, err)
		}
		s.conns = append(s.conns, conn)
		s.kv = append(s.kv, storepb.NewKVClient(conn))
	}
	return s, nil
}

// dialConsensusGRPC opens a TCP connection to a consensus port and sends the
// gRPC connection-type byte; grpc's TLS credentials then handshake on it.
func dialConsensusGRPC(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{connTypeGRPC}); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("send connection type to %s: %w", addr, err)
	}
	return c, nil
}

// Endpoints lists the nodes' consensus addresses.
func (s *skiffSystem) Endpoints() []string {
	var out []string
	for _, n := range s.cluster.Nodes {
		out = append(out, n.Addr)
	}
	return out
}

// Leader names the node that leads now, empty when none does.
func (s *skiffSystem) Leader() string {
	for _, n := range s.cluster.Running() {
		if st := n.Store(); st != nil && st.IsLeader() {
			return n.ID
		}
	}
	return ""
}

func (s *skiffSystem) clientFor(i int) kvClient {
	return skiffClient{s.kv[i%len(s.kv)]}
}

// Close closes the client connections and stops every node.
func (s *skiffSystem) Close() {
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.cluster.Close()
}

type skiffClient struct{ kv storepb.KVClient }

func (c skiffClient) Put(ctx context.Context, key string, value []byte) error {
	_, err := c.kv.Put(ctx, &storepb.PutRequest{Key: []byte(key), Value: value})
	return err
}

func (c skiffClient) Get(ctx context.Context, key string) error {
	resp, err := c.kv.Range(ctx, &storepb.RangeRequest{Key: []byte(key), Stale: false})
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 {
		return fmt.Errorf("range %s: %d keys, want 1", key, len(resp.Kvs))
	}
	return nil
}
