package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/node"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestWorkerFollowsControlNodes: a worker that joined when only c1 existed
// learns c2 and c3 (no config edit), keeps working once c1 is removed and
// stopped, saves the control nodes of now in node.json and node.conf, and
// a restart of the worker comes up through them alone.
func TestWorkerFollowsControlNodes(t *testing.T) {
	port := freeUDPTCP(t, "127.0.0.71")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	config := func(name, ip string) (node.Config, *testutil.SyncBuffer) {
		cfg := node.DefaultConfig()
		out := &testutil.SyncBuffer{}
		cfg.DataDir, cfg.Name, cfg.Advertise, cfg.BindAddress = filepath.Join(t.TempDir(), name), name, ip, ip
		cfg.APIPort, cfg.RaftPort = freeTCP(t, ip), freeTCP(t, ip)
		cfg.Out, cfg.Logger, cfg.Membership = out, log, gossipMembership(port, log, nil)
		cfg.RegistrationInterval = 300 * time.Millisecond
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
	wait := func(out *testutil.SyncBuffer, what string, re *regexp.Regexp) []string {
		var m []string
		testutil.WaitFor(t, 60*time.Second, what, func() bool {
			m = re.FindStringSubmatch(out.String())
			return m != nil
		})
		return m
	}

	c1, out1 := config("c1", "127.0.0.71")
	// c1 is stopped without waiting long for it: the store of a removed
	// member may take long to close (its gRPC server waits for streams
	// its peers hold), which is not what this test is about.
	c1ctx, stopC1 := context.WithCancel(context.Background())
	c1done := make(chan error, 1)
	go func() { c1done <- node.Init(c1ctx, c1) }()
	t.Cleanup(stopC1)
	cj := wait(out1, "c1 to print the control join command", regexp.MustCompile(`ctl join --control --token (\S+) (\S+)`))
	wj := wait(out1, "c1 to print the worker join command", regexp.MustCompile(`ctl join --token (\S+) (\S+)`))

	// The worker joins while c1 is the only control node.
	var mu sync.Mutex
	var wclient *client.Client
	w, wout := config("w1", "127.0.0.74")
	w.Worker = func(ctx context.Context, env node.WorkerEnv) error {
		mu.Lock()
		wclient = env.Client
		mu.Unlock()
		<-ctx.Done()
		return nil
	}
	stopW := run(func(ctx context.Context) error {
		return node.Join(ctx, w, node.JoinOptions{Address: wj[2], Token: wj[1]})
	})
	wait(wout, "w1 registered", regexp.MustCompile(`worker node w1 registered`))

	var apis []string
	for _, c := range []struct{ name, ip string }{{"c2", "127.0.0.72"}, {"c3", "127.0.0.73"}} {
		cfg, out := config(c.name, c.ip)
		run(func(ctx context.Context) error {
			return node.Join(ctx, cfg, node.JoinOptions{Address: cj[2], Token: cj[1], Control: true})
		})
		wait(out, c.name+" serving", regexp.MustCompile(`control node `+c.name+` serving`))
		apis = append(apis, net2(c.ip, cfg.APIPort))
	}
	slices.Sort(apis)
	savedServers := func() []string {
		st, err := node.LoadState(w.DataDir)
		if err != nil {
			return nil
		}
		return st.Servers
	}
	testutil.WaitFor(t, 30*time.Second, "w1 to save all three control nodes", func() bool { return len(savedServers()) == 3 })

	// c1 goes: removed from the store through c2, then stopped — once c2
	// and c3 vote (the odd-quorum reconcile promotes them after they join;
	// removing the only voter is refused).
	admin := filepath.Join(c1.DataDir, node.AdminConfigFile)
	testutil.WaitFor(t, 30*time.Second, "three voters", func() bool {
		var out bytes.Buffer
		err := Run(context.Background(), []string{"--config", admin, "--server", apis[0], "members"},
			Streams{In: &bytes.Buffer{}, Out: &out, Err: io.Discard})
		return err == nil && strings.Count(out.String(), " voter ") == 3
	})
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), []string{"--config", admin, "--server", apis[0], "member", "remove", "c1"},
		Streams{In: &bytes.Buffer{}, Out: &stdout, Err: &stderr}); err != nil {
		t.Fatalf("member remove c1: %v %s", err, stderr.String())
	}
	stopC1()
	select {
	case err := <-c1done:
		if err != nil {
			t.Errorf("c1 stopped with: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Log("c1 (removed) still closing its store after 15 s; going on without it answering")
	}
	testutil.WaitFor(t, 30*time.Second, "w1 to save c2 and c3 only", func() bool { return slices.Equal(savedServers(), apis) })
	cc, err := client.LoadConfig(filepath.Join(w.DataDir, node.NodeConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cc.Servers, apis) {
		t.Errorf("node.conf servers = %v, want %v", cc.Servers, apis)
	}
	mu.Lock()
	wc := wclient
	mu.Unlock()
	ctx := context.Background()
	if _, err := client.Get[*apiv1.Node](ctx, wc, "", "w1"); err != nil {
		t.Fatalf("the worker's client after c1 is gone: %v", err)
	}

	// A restart: node.json names c2 and c3, and the worker comes up through them.
	stopW()
	w2, wout2 := config("w1", "127.0.0.74")
	w2.DataDir = w.DataDir
	run(func(ctx context.Context) error { return node.Join(ctx, w2, node.JoinOptions{}) })
	wait(wout2, "w1 registered again after its restart", regexp.MustCompile(`worker node w1 registered`))
}

func net2(ip string, port int) string { return ip + ":" + itoa(port) }

// freeUDPTCP is a port free for TCP on ip (gossip takes TCP and UDP).
func freeUDPTCP(t *testing.T, ip string) int { return freeTCP(t, ip) }
