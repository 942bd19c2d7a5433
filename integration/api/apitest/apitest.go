package apitest

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/controlplane/api"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// Options shape a cluster.
type Options struct {
	Nodes   int
	BaseDir string
	Logger  *slog.Logger
	// Tune adjusts each node's store config; TuneAPI each API server config.
	Tune    func(*consensus.Config)
	TuneAPI func(*api.Config)
}

// Cluster is a store cluster with an API server on every node.
type Cluster struct {
	Store   *consensustest.Cluster
	opts    Options
	mu      sync.Mutex
	servers []*Server
}

// Server is one node's API server.
type Server struct {
	Node   *consensustest.Node
	Addr   string
	API    *api.Server
	cancel context.CancelFunc
	done   chan error
}

// NewCluster starts opts.Nodes control nodes with API servers.
func NewCluster(opts Options) (*Cluster, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	sc, err := consensustest.NewCluster(consensustest.Options{Nodes: opts.Nodes, BaseDir: opts.BaseDir, Tune: opts.Tune, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	c := &Cluster{Store: sc, opts: opts}
	for _, n := range sc.Nodes {
		// Port 0: the listener takes its port from the OS at once (a
		// port picked and released first can be taken by another test
		// process before it is bound); restarts then reuse it.
		srv := &Server{Node: n, Addr: "127.0.0.1:0"}
		c.servers = append(c.servers, srv)
		if err := c.startServer(srv); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Start is NewCluster for tests: it fails the test on error and closes the
// cluster when the test ends.
func Start(t testing.TB, nodes int, tuneAPI func(*api.Config)) *Cluster {
	t.Helper()
	c, err := NewCluster(Options{Nodes: nodes, BaseDir: t.TempDir(), TuneAPI: tuneAPI,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatalf("start %d-node API cluster: %v", nodes, err)
	}
	t.Cleanup(c.Close)
	return c
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (c *Cluster) startServer(srv *Server) error {
	store := srv.Node.Store()
	if store == nil {
		return fmt.Errorf("node %s is stopped", srv.Node.ID)
	}
	cfg := api.DefaultConfig()
	cfg.Store = store
	cfg.Logger = c.opts.Logger.With("node", srv.Node.ID)
	cfg.RetryBackoff = 100 * time.Millisecond
	if c.opts.TuneAPI != nil {
		c.opts.TuneAPI(&cfg)
	}
	a, err := api.New(cfg)
	if err != nil {
		return err
	}
	serverTLS, _, err := c.Store.PKI.TLSConfigs("api-" + srv.Node.ID)
	if err != nil {
		return err
	}
	var lis net.Listener
	for i := 0; i < 50; i++ { // the port may linger briefly after a restart
		if lis, err = net.Listen("tcp", srv.Addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", srv.Addr, err)
	}
	if a := lis.Addr().String(); a != srv.Addr { // first start only: restarts keep it
		srv.Addr = a
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv.API, srv.cancel, srv.done = a, cancel, make(chan error, 1)
	go func() { srv.done <- a.Serve(ctx, lis, serverTLS) }()
	return nil
}

// Servers returns the API servers (index i serves Store.Nodes[i]).
func (c *Cluster) Servers() []*Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Server(nil), c.servers...)
}

// Addrs are the API addresses of all servers.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, s := range c.Servers() {
		out = append(out, s.Addr)
	}
	return out
}

// Leader returns the API server of the current store leader.
func (c *Cluster) Leader(timeout time.Duration) (*Server, error) {
	n, err := c.Store.WaitLeader(timeout)
	if err != nil {
		return nil, err
	}
	for _, s := range c.Servers() {
		if s.Node == n {
			return s, nil
		}
	}
	return nil, errors.New("leader has no API server")
}

// Follower returns the API server of a running node that does not lead.
func (c *Cluster) Follower(timeout time.Duration) (*Server, error) {
	l, err := c.Leader(timeout)
	if err != nil {
		return nil, err
	}
	for _, s := range c.Servers() {
		if s != l && s.Node.Store() != nil {
			return s, nil
		}
	}
	return nil, errors.New("no follower running")
}

// StopNode stops a node's API server and then its store, as a crash would.
func (c *Cluster) StopNode(s *Server) {
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
	s.Node.Stop()
}

// StartNode restarts a stopped node's store and API server on the same addresses.
func (c *Cluster) StartNode(s *Server) error {
	if err := s.Node.Start(); err != nil {
		return err
	}
	return c.startServer(s)
}

// Close stops every API server and node.
func (c *Cluster) Close() {
	for _, s := range c.Servers() {
		if s.cancel != nil {
			s.cancel()
			<-s.done
			s.cancel = nil
		}
	}
	c.Store.Close()
}

// ClientTLS issues a client certificate for user (organizations as groups
// are not needed yet) and returns its mutual-TLS config.
func (c *Cluster) ClientTLS(user string) (*tls.Config, error) {
	cert, err := c.Store.PKI.Issue(user)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: c.Store.PKI.Pool, MinVersion: tls.VersionTLS13}, nil
}

// Client returns a client of the given servers (all when none given).
func (c *Cluster) Client(servers ...string) (*client.Client, error) {
	tc, err := c.ClientTLS("admin")
	if err != nil {
		return nil, err
	}
	if len(servers) == 0 {
		servers = c.Addrs()
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS = servers, tc
	return client.New(o)
}

// MustClient is Client for tests.
func (c *Cluster) MustClient(t testing.TB, servers ...string) *client.Client {
	t.Helper()
	cl, err := c.Client(servers...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// WriteClientConfig writes ca.crt, <user>.crt, <user>.key and a client
// config naming every server into dir; it returns the config's path.
func (c *Cluster) WriteClientConfig(dir, user string) (string, error) {
	cert, err := c.Store.PKI.Issue(user)
	if err != nil {
		return "", err
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return "", fmt.Errorf("unexpected key type %T", cert.PrivateKey)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	files := map[string][]byte{
		"ca.crt":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Store.PKI.CA.Raw}),
		user + ".crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		user + ".key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", err
		}
	}
	cfg := &client.Config{Servers: c.Addrs(), CertificateAuthority: "ca.crt",
		ClientCertificate: user + ".crt", ClientKey: user + ".key", Namespace: "default"}
	path := filepath.Join(dir, "config")
	return path, cfg.Save(path)
}

// WaitReady waits until every default namespace exists (the servers have
// bootstrapped) as seen through a client. They are created one after the
// other, so "default" alone is not enough: a hollow node renewing its
// Lease right after it would find no kube-node-lease (a flake seen in CI).
func (c *Cluster) WaitReady(ctx context.Context) error {
	cl, err := c.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	want := api.DefaultConfig().DefaultNamespaces
	for {
		nss, _, err := client.List[*apiv1.Namespace](ctx, cl, client.ListOptions{})
		if err == nil && allNamed(nss, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("API cluster not ready: %w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// allNamed says whether every name in want is among the namespaces.
func allNamed(nss []*apiv1.Namespace, want []string) bool {
	have := make(map[string]bool, len(nss))
	for _, ns := range nss {
		have[ns.GetMetadata().GetName()] = true
	}
	for _, n := range want {
		if !have[n] {
			return false
		}
	}
	return true
}
