package cptest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/api"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/builtin"
	"github.com/skiffhq/skiff/controlplane/controllers/garbagecollector"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/hollow"
	"github.com/skiffhq/skiff/proto/client"
)

// Options shape a cluster. The zero value is 3 control nodes, 3 hollow
// nodes, every built-in loop with its default config.
type Options struct {
	ControlNodes int
	// HollowNodes are named hollow-0, hollow-1, …; negative means none.
	HollowNodes int
	// TuneHollow adjusts the pool's hollow.DefaultConfig.
	TuneHollow func(*hollow.Config)
	// Loops names the loops to run ("scheduler", "endpoints", …); nil
	// runs every registered one, an empty non-nil slice none.
	Loops []string
	// Configs are per-loop configs by registered name (see
	// controllers.ConfigFor); each loop's DefaultConfig otherwise.
	Configs map[string]any
	// Registry overrides the built-in loops (tests of one controller).
	Registry *controllers.Registry
	// Leader tunes LeaderLoops (zero: DefaultLeaderConfig).
	Leader  *controlplane.LeaderConfig
	TuneAPI func(*api.Config)
	// TuneStore adjusts each node's store config (consensustest.FastConfig
	// timeouts by default).
	TuneStore func(*consensus.Config)
	BaseDir   string
	Logger    *slog.Logger
}

// Cluster is a running control plane with hollow nodes.
type Cluster struct {
	API  *apitest.Cluster
	Pool *hollow.Pool
	opts Options

	admin    *client.Client
	poolStop context.CancelFunc
	poolDone chan struct{}

	mu    sync.Mutex
	loops map[*apitest.Server]*nodeLoops
}

// nodeLoops is one control node's LeaderLoops and the client it uses.
type nodeLoops struct {
	cancel context.CancelFunc
	done   chan struct{}
	client *client.Client
}

// New starts a cluster (for programs; tests use Start).
func New(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.ControlNodes == 0 {
		opts.ControlNodes = 3
	}
	if opts.HollowNodes == 0 {
		opts.HollowNodes = 3
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Registry == nil {
		opts.Registry = builtin.NewRegistry()
	}
	tuneAPI := func(cfg *api.Config) {
		// The leader loops and every hollow node share one identity here
		// (apitest's admin); in a cluster the loops run as exempt control
		// nodes and each node has its own, so lift the per-identity caps.
		cfg.Limits.WatchesPerIdentity, cfg.Limits.StreamsPerIdentity = -1, -1
		if opts.TuneAPI != nil {
			opts.TuneAPI(cfg)
		}
	}
	ac, err := apitest.NewCluster(apitest.Options{Nodes: opts.ControlNodes, BaseDir: opts.BaseDir, Logger: opts.Logger, TuneAPI: tuneAPI, Tune: opts.TuneStore})
	if err != nil {
		return nil, err
	}
	c := &Cluster{API: ac, opts: opts, loops: map[*apitest.Server]*nodeLoops{}}
	fail := func(err error) (*Cluster, error) { c.Close(); return nil, err }
	if err := ac.WaitReady(ctx); err != nil {
		return fail(err)
	}
	if c.admin, err = ac.Client(); err != nil {
		return fail(err)
	}
	for _, s := range ac.Servers() {
		if err := c.startLoops(s); err != nil {
			return fail(err)
		}
	}
	hcfg := hollow.DefaultConfig()
	hcfg.Logger = opts.Logger.With("component", "hollow")
	if opts.TuneHollow != nil {
		opts.TuneHollow(&hcfg)
	}
	poolClient, err := ac.Client()
	if err != nil {
		return fail(err)
	}
	c.Pool = hollow.NewPool(poolClient, hcfg)
	pctx, cancel := context.WithCancel(context.Background())
	c.poolStop, c.poolDone = cancel, make(chan struct{})
	go func() {
		defer close(c.poolDone)
		defer poolClient.Close()
		if err := c.Pool.Run(pctx); err != nil {
			opts.Logger.Error("hollow pool stopped", "err", err)
		}
	}()
	if opts.HollowNodes > 0 {
		names := make([]string, opts.HollowNodes)
		for i := range names {
			names[i] = fmt.Sprintf("hollow-%d", i)
		}
		if err := c.Pool.AddNodes(ctx, names, nil, 64); err != nil {
			return fail(fmt.Errorf("hollow nodes: %w", err))
		}
	}
	if err := c.Pool.WaitForSync(ctx); err != nil {
		return fail(err)
	}
	return c, nil
}

// Start is New for tests: it fails the test on error and closes the
// cluster when the test ends. Logs at Warn and above go to t.Log.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.BaseDir == "" {
		opts.BaseDir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// startLoops runs LeaderLoops on one control node, its loops talking to
// that node's own API server.
func (c *Cluster) startLoops(s *apitest.Server) error {
	store := s.Node.Store()
	if store == nil {
		return fmt.Errorf("control node %s is stopped", s.Node.ID)
	}
	cl, err := c.API.Client(s.Addr)
	if err != nil {
		return err
	}
	log := c.opts.Logger.With("node", s.Node.ID)
	names := c.opts.Loops
	if names == nil {
		names = c.opts.Registry.Names()
	}
	var loops []controlplane.Loop
	if len(names) > 0 {
		configs := map[string]any{"garbagecollector": garbagecollector.Config{Interval: time.Second}} // tests wait for sweeps
		maps.Copy(configs, c.opts.Configs)
		loops, err = c.opts.Registry.Build(controllers.Deps{Client: cl, Logger: log, Node: s.Node.ID, Configs: configs, Sweeper: s.API,
			Informers: client.NewInformerFactory(cl)}, names...)
		if err != nil {
			cl.Close()
			return err
		}
	}
	lcfg := controlplane.DefaultLeaderConfig()
	if c.opts.Leader != nil {
		lcfg = *c.opts.Leader
	}
	lcfg.Logger = log
	ll := controlplane.NewLeaderLoops(lcfg, store, loops...)
	ctx, cancel := context.WithCancel(context.Background())
	nl := &nodeLoops{cancel: cancel, done: make(chan struct{}), client: cl}
	go func() {
		defer close(nl.done)
		if err := ll.Run(ctx); err != nil {
			log.Error("leader loops stopped", "err", err)
		}
	}()
	c.mu.Lock()
	c.loops[s] = nl
	c.mu.Unlock()
	return nil
}

func (c *Cluster) stopLoops(s *apitest.Server) {
	c.mu.Lock()
	nl := c.loops[s]
	delete(c.loops, s)
	c.mu.Unlock()
	if nl != nil {
		nl.cancel()
		<-nl.done
		nl.client.Close()
	}
}

// Client is an admin client of every API server, closed with the test.
func (c *Cluster) Client(t testing.TB) *client.Client { return c.API.MustClient(t) }

// Admin is the cluster's own admin client (closed by Close).
func (c *Cluster) Admin() *client.Client { return c.admin }

// Leader is the API server of the current leader.
func (c *Cluster) Leader(timeout time.Duration) (*apitest.Server, error) {
	return c.API.Leader(timeout)
}

// StopControlNode crashes a control node: its store and API server stop,
// then its leader loops (which can no longer write through it).
func (c *Cluster) StopControlNode(s *apitest.Server) {
	c.API.StopNode(s)
	c.stopLoops(s)
}

// StartControlNode restarts a stopped control node with fresh loops.
func (c *Cluster) StartControlNode(s *apitest.Server) error {
	if err := c.API.StartNode(s); err != nil {
		return err
	}
	return c.startLoops(s)
}

// StopLeader crashes the current leader and returns it (to restart it).
func (c *Cluster) StopLeader(t testing.TB) *apitest.Server {
	t.Helper()
	l, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatalf("no leader: %v", err)
	}
	c.StopControlNode(l)
	return l
}

// Close stops hollow nodes, loops and the control plane.
func (c *Cluster) Close() {
	if c.poolStop != nil {
		c.poolStop()
		<-c.poolDone
		c.poolStop = nil
	}
	for _, s := range c.API.Servers() {
		c.stopLoops(s)
	}
	if c.admin != nil {
		c.admin.Close()
		c.admin = nil
	}
	c.API.Close()
}
