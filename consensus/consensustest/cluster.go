package consensustest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus"
)

// Options shape a cluster. Tune adjusts each node's config before it opens.
type Options struct {
	Nodes   int
	BaseDir string
	Tune    func(*consensus.Config)
	Logger  *slog.Logger
}

// Cluster is a set of in-process control nodes on loopback.
type Cluster struct {
	opts  Options
	PKI   *PKI
	mu    sync.Mutex
	Nodes []*Node
}

// Node is one member; Store is nil while the node is stopped.
type Node struct {
	ID    string
	Dir   string
	Addr  string
	Fault *consensus.NetworkFault
	cfg   consensus.Config
	mu    sync.Mutex
	store *consensus.Store
}

// Store returns the running store, or nil when the node is stopped.
func (n *Node) Store() *consensus.Store {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.store
}

// FastConfig has timeouts fit for loopback tests on a loaded 2-core machine:
// fast enough to fail over in well under a second, slow enough not to flap
// (slower under the race detector, see race.go).
func FastConfig() consensus.Config {
	c := consensus.DefaultConfig()
	c.HeartbeatTimeout = raceElection * 400 * time.Millisecond
	c.ElectionTimeout = raceElection * 400 * time.Millisecond
	c.LeaderLeaseTimeout = raceLease * 200 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.HealthyContact = 2 * time.Second
	c.ApplyTimeout = 5 * time.Second
	return c
}

// NewCluster starts opts.Nodes nodes: the first bootstraps, the others join
// through it (as the odd-quorum policy decides).
func NewCluster(opts Options) (*Cluster, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pki, err := NewPKI()
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, PKI: pki}
	for i := 0; i < opts.Nodes; i++ {
		if _, err := c.AddNode(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitVoters(ExpectedVoters(opts.Nodes, 5), 20*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ExpectedVoters is the odd-quorum policy's voter count for n members.
func ExpectedVoters(n, max int) int {
	if n%2 == 0 {
		n--
	}
	if n > max {
		n = max
	}
	return n
}

// WaitVoters waits until every running node's configuration has exactly
// want voters. The leader's alone is not enough: it lists a promotion as
// soon as it is appended, before a quorum has it, and a test that stops
// the leader then can leave the others without the voters to elect one.
func (c *Cluster) WaitVoters(want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last int
	var lastNode string
	for time.Now().Before(deadline) {
		if _, err := c.WaitLeader(time.Until(deadline)); err == nil {
			all := true
			for _, n := range c.Running() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				ms, err := n.Store().Members(ctx)
				cancel()
				last, lastNode = 0, n.ID
				if err == nil {
					for _, m := range ms {
						if m.Suffrage == 0 { // VOTER
							last++
						}
					}
				}
				if err != nil || last != want {
					all = false
					break
				}
			}
			if all {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("voters: want %d, %s has %d after %s", want, lastNode, last, timeout)
}

// Start is NewCluster for tests: it fails the test on error and closes the
// cluster when the test ends.
func Start(t testing.TB, nodes int, tune func(*consensus.Config)) *Cluster {
	t.Helper()
	c, err := NewCluster(Options{Nodes: nodes, BaseDir: t.TempDir(), Tune: tune,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatalf("start %d-node cluster: %v", nodes, err)
	}
	t.Cleanup(c.Close)
	return c
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// AddNode starts a new node; the first bootstraps, later ones are added
// through the current leader.
func (c *Cluster) AddNode() (*Node, error) {
	c.mu.Lock()
	idx := len(c.Nodes)
	c.mu.Unlock()
	id := fmt.Sprintf("n%d", idx+1)
	addr, err := FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	srvTLS, cliTLS, err := c.PKI.TLSConfigs(id)
	if err != nil {
		return nil, err
	}
	cfg := FastConfig()
	cfg.ID = id
	cfg.DataDir = filepath.Join(c.opts.BaseDir, id)
	cfg.BindAddr = addr
	cfg.ServerTLS, cfg.ClientTLS = srvTLS, cliTLS
	cfg.PeerIdentity = CommonNameIdentity
	cfg.Bootstrap = idx == 0
	if idx > 0 {
		// As `ctl join --control` does: the new node learns who may
		// contact it before it has a configuration of its own.
		l, err := c.WaitLeader(10 * time.Second)
		if err != nil {
			return nil, err
		}
		cfg.JoinMembers = l.Store().MemberIDs()
	}
	cfg.Logger = c.opts.Logger
	if c.opts.Tune != nil {
		c.opts.Tune(&cfg)
	}
	n := &Node{ID: id, Dir: cfg.DataDir, Addr: addr, Fault: &consensus.NetworkFault{}}
	cfg.Fault = n.Fault
	n.cfg = cfg
	// The port was free when the OS named it, but another test process
	// (go test -p) may bind it before this node does: take another.
	for attempt := 1; ; attempt++ {
		err := n.Start()
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 5 {
			return nil, err
		}
		if err := os.RemoveAll(cfg.DataDir); err != nil {
			return nil, err
		}
		if addr, err = FreeLoopbackAddr(); err != nil {
			return nil, err
		}
		n.Addr, n.cfg.BindAddr = addr, addr
	}
	c.mu.Lock()
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	if idx > 0 {
		if err := c.join(n); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (c *Cluster) join(n *Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		l, err := c.WaitLeader(10 * time.Second)
		if err != nil {
			return err
		}
		_, err = l.Store().AddMember(ctx, n.ID, n.Addr, false)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("add %s: %w", n.ID, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreeLoopbackAddr asks the OS for a port. The node binds it again right
// away; restarts reuse it, since Raft's configuration names addresses.
func FreeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start opens the node's store (again) with its data dir and address.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.store != nil {
		return nil
	}
	s, err := consensus.Open(n.cfg)
	if err != nil {
		return fmt.Errorf("open %s: %w", n.ID, err)
	}
	n.store = s
	return nil
}

// Stop closes the node's store, as a crash would (the data stays).
func (n *Node) Stop() {
	n.mu.Lock()
	s := n.store
	n.store = nil
	n.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// Config returns the node's config (for recovery tests).
func (n *Node) Config() consensus.Config { return n.cfg }

// Wipe deletes the node's data (it must be stopped).
func (n *Node) Wipe() error { return os.RemoveAll(n.Dir) }

// PrepareRejoin makes a wiped node's next Start that of a node joining the
// given members anew (never bootstrapping a cluster of its own).
func (n *Node) PrepareRejoin(members []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg.Bootstrap = false
	n.cfg.JoinMembers = append([]string(nil), members...)
}

// Running returns the nodes whose store is open.
func (c *Cluster) Running() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.Nodes {
		if n.Store() != nil {
			out = append(out, n)
		}
	}
	return out
}

// ErrNoLeader: no running node leads within the timeout.
var ErrNoLeader = errors.New("no leader elected")

// WaitLeader returns the running node that leads (and is ready to serve),
// as agreed by every running, connected node.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Node, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, n := range c.Running() {
			s := n.Store()
			if s == nil || !s.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			err := s.Linearize(ctx)
			cancel()
			if err == nil {
				return n, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, ErrNoLeader
}

// MustLeader is WaitLeader for tests.
func (c *Cluster) MustLeader(t testing.TB) *Node {
	t.Helper()
	n, err := c.WaitLeader(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Close stops every node.
func (c *Cluster) Close() {
	c.mu.Lock()
	nodes := append([]*Node(nil), c.Nodes...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop() }()
	}
	wg.Wait()
}
