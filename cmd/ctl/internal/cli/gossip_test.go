package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/gossip"
	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// The daemons' wiring: a control node (key from the store) and a `ctl
// join` worker (key from its join answer, seeds from its servers) become
// members of one gossip cluster, each with its metadata (the worker's pod
// range once its Node has one); a worker stopped
// with its context leaves (Left), which is not a death.
func TestDaemonsGossipWithTheClusterKey(t *testing.T) {
	gc := startGossipCluster(t, false)
	get, ccfg, addr, stopWorker, port := gc.get, gc.ccfg, gc.addr, gc.stopWorker, gc.port
	c, w := get("c1"), get("w1")
	// The control node announces the cluster's pod range (from the store):
	// the worker's agent learns it there.
	testutil.WaitFor(t, 10*time.Second, "c1's metadata with the cluster range at w1", func() bool {
		x, _ := w.g.Member("c1")
		return noKeys(x.Meta) == gossip.Meta{Role: gossip.RoleControl, Node: "c1", IP: "127.0.0.61", APIAddress: addr, ClusterCIDR: "10.244.0.0/16"}
	})
	if cn := w.ControlNodes(); len(cn) != 1 || cn[0] != (node.ControlMember{Name: "c1", APIAddress: addr, ClusterCIDR: "10.244.0.0/16"}) {
		t.Errorf("worker's ControlNodes() = %+v", cn)
	}
	if x, _ := c.g.Member("w1"); noKeys(x.Meta) != (gossip.Meta{Role: gossip.RoleWorker, Node: "w1", IP: "127.0.0.62"}) || x.Addr != net.JoinHostPort("127.0.0.62", itoa(port)) {
		t.Errorf("control node sees w1 at %s with meta %+v", x.Addr, x.Meta)
	}
	// The worker's pod range, once its Node has one, reaches the others.
	admin, err := client.LoadConfig(filepath.Join(ccfg.DataDir, node.AdminConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.NewFromConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	// The worker registers its Node after gossip forms: wait for it.
	var n *apiv1.Node
	testutil.WaitFor(t, 20*time.Second, "the worker's Node w1 registered", func() bool {
		n, err = client.Get[*apiv1.Node](ctx, cl, "", "w1")
		return err == nil
	})
	if n.Spec == nil {
		n.Spec = &apiv1.NodeSpec{}
	}
	n.Spec.PodCIDR = "10.244.7.0/24"
	if _, err := client.Update(ctx, cl, n); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "w1's pod range in its metadata at c1", func() bool {
		x, _ := c.g.Member("w1")
		return x.Meta.PodCIDR == "10.244.7.0/24"
	})
	stopWorker()
	testutil.WaitFor(t, 10*time.Second, "w1 left at c1", func() bool {
		x, _ := c.g.Member("w1")
		return x.State == gossip.StateLeft
	})
	if _, dead := c.DeadSince("w1"); dead {
		t.Error("a worker stopped cleanly is reported dead")
	}
}

// gossipCluster is a control node c1 (127.0.0.61), a `ctl join` worker
// w1 (127.0.0.62) and, with withC2, a second control node c2 (127.0.0.64),
// all gossip members, alive at each other.
type gossipCluster struct {
	get        func(name string) *member
	ccfg, wcfg node.Config
	// addr is c1's API address.
	addr       string
	stopWorker func()
	// port is the gossip port of every member.
	port int
	// startKey is the key the named node's member was last started with.
	startKey func(name string) []byte
	// restartWorker stops w1 and runs it again on its data dir.
	restartWorker func()
}

func startGossipCluster(t *testing.T, withC2 bool) gossipCluster {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.61:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port // the same port on every host, as in a cluster
	l.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var mu sync.Mutex
	members := map[string]*member{}
	startKeys := map[string][]byte{}
	factory := func(info node.MemberInfo) (node.Membership, error) {
		m, err := gossipMembership(port, log, nil)(info)
		if err == nil {
			mu.Lock()
			members[info.Name], startKeys[info.Name] = m.(*member), info.Key
			mu.Unlock()
		}
		return m, err
	}
	get := func(name string) *member {
		mu.Lock()
		defer mu.Unlock()
		return members[name]
	}
	config := func(name, ip string) (node.Config, *testutil.SyncBuffer) {
		cfg := node.DefaultConfig()
		out := &testutil.SyncBuffer{}
		cfg.DataDir, cfg.Name, cfg.Advertise, cfg.BindAddress = filepath.Join(t.TempDir(), name), name, ip, ip
		cfg.APIPort, cfg.RaftPort = freeTCP(t, ip), freeTCP(t, ip)
		cfg.Out, cfg.Logger, cfg.Membership = out, log, factory
		return cfg, out
	}
	run := func(f func(context.Context) error) context.CancelFunc {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f(ctx) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("node stopped with: %v", err)
				}
			})
		}
		t.Cleanup(stop)
		return stop
	}

	ccfg, out := config("c1", "127.0.0.61")
	run(func(ctx context.Context) error { return node.Init(ctx, ccfg) })
	re := regexp.MustCompile(`ctl join --token (\S+) (\S+)`)
	var token, addr string
	testutil.WaitFor(t, 30*time.Second, "init to print the worker join command", func() bool {
		m := re.FindStringSubmatch(out.String())
		if m != nil {
			token, addr = m[1], m[2]
		}
		return m != nil
	})
	wcfg, _ := config("w1", "127.0.0.62")
	stopWorker := run(func(ctx context.Context) error {
		return node.Join(ctx, wcfg, node.JoinOptions{Address: addr, Token: token})
	})
	names := []string{"c1", "w1"}
	if withC2 {
		cj := regexp.MustCompile(`ctl join --control --token (\S+) (\S+)`).FindStringSubmatch(out.String())
		if cj == nil {
			t.Fatalf("no control join command in init's output:\n%s", out.String())
		}
		c2cfg, _ := config("c2", "127.0.0.64")
		run(func(ctx context.Context) error {
			return node.Join(ctx, c2cfg, node.JoinOptions{Address: cj[2], Token: cj[1], Control: true})
		})
		names = append(names, "c2")
	}
	testutil.WaitFor(t, 60*time.Second, "every node alive at every member", func() bool {
		var ms []*member
		for _, name := range names {
			m := get(name)
			if m == nil {
				return false
			}
			ms = append(ms, m)
		}
		for _, m := range ms {
			for _, name := range names {
				if x, ok := m.g.Member(name); !ok || x.State != gossip.StateAlive {
					return false
				}
			}
		}
		return true
	})
	startKey := func(name string) []byte {
		mu.Lock()
		defer mu.Unlock()
		return startKeys[name]
	}
	restartWorker := func() {
		stopWorker()
		mu.Lock()
		delete(members, "w1")
		mu.Unlock()
		run(func(ctx context.Context) error {
			return node.Join(ctx, wcfg, node.JoinOptions{Address: addr, Token: token})
		})
	}
	return gossipCluster{get: get, ccfg: ccfg, wcfg: wcfg, addr: addr, stopWorker: stopWorker, port: port, startKey: startKey, restartWorker: restartWorker}
}

func freeTCP(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestGossipPortOutOfRangeRefused(t *testing.T) {
	for _, port := range []string{"0", "70000", "-1"} {
		var out, errb bytes.Buffer
		err := Run(context.Background(), []string{"init", "--data-dir", t.TempDir(), "--gossip", "--gossip-port", port},
			Streams{In: &bytes.Buffer{}, Out: &out, Err: &errb})
		if err == nil || !strings.Contains(err.Error(), "--gossip-port "+port) {
			t.Errorf("--gossip-port %s: err %v, want one naming the flag and value", port, err)
		}
	}
}

// noKeys is m without its key fingerprints (gossipkeys_test checks those).
func noKeys(m gossip.Meta) gossip.Meta {
	m.Keys = ""
	return m
}

// A taken gossip port is refused before the node is created or joins: a
// control node that joined and then died on the port would leave the
// cluster a dead member.
func TestGossipPortTakenRefusedBeforeJoining(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := itoa(held.Addr().(*net.TCPAddr).Port)
	dir := filepath.Join(t.TempDir(), "n")
	for _, args := range [][]string{
		{"init", "--data-dir", dir, "--bind-address", "127.0.0.1", "--gossip-port", port},
		{"join", "--control", "--token", "skiff1.x", "--data-dir", dir, "--bind-address", "127.0.0.1", "--gossip-port", port, "127.0.0.1:1"},
	} {
		var out, errb bytes.Buffer
		err := Run(context.Background(), args, Streams{In: &bytes.Buffer{}, Out: &out, Err: &errb})
		if err == nil || !strings.Contains(err.Error(), "--gossip-port "+port) || !strings.Contains(err.Error(), "--gossip=false") {
			t.Errorf("%s: err %v, want the taken port refused naming --gossip-port and --gossip=false", args[0], err)
		}
		if _, serr := os.Stat(dir); !os.IsNotExist(serr) {
			t.Errorf("%s: data dir %s exists after a refused start (stat: %v)", args[0], dir, serr)
		}
	}
}
