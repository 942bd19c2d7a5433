package agent_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/agent/network"
	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	"github.com/skiffhq/skiff/controlplane/controllers/podcidr"
	"github.com/skiffhq/skiff/integration/api/apitest"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// idleRuntime runs no pods: these tests are about the Node's range.
type idleRuntime struct{}

func (idleRuntime) RunPod(context.Context, *runtime.Pod) error            { return nil }
func (idleRuntime) StopPod(context.Context, string, *time.Duration) error { return nil }
func (idleRuntime) RemovePod(context.Context, string) error               { return nil }
func (idleRuntime) PodStatus(string) (runtime.PodStatus, error)           { return runtime.PodStatus{}, nil }
func (idleRuntime) ListPods() []runtime.PodStatus                         { return nil }

// storeClusterNetwork writes the cluster's pod network as ctl init does.
func storeClusterNetwork(t *testing.T, cp *apitest.Cluster, net clusternet.Config) {
	t.Helper()
	l, err := cp.Store.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Store().Put(context.Background(), &storepb.PutRequest{Key: []byte(clusternet.StoreKey), Value: b}); err != nil {
		t.Fatal(err)
	}
}

func nodeClientFor(t *testing.T, cp *apitest.Cluster, name string) *client.Client {
	t.Helper()
	tc, err := cp.ClientTLS("node:" + name)
	if err != nil {
		t.Fatal(err)
	}
	o := client.DefaultOptions()
	o.Servers, o.TLS = cp.Addrs(), tc
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// An agent registers its Node without a pod range (a node may not pick
// its own), says in its log that it waits for one, and starts no pod sync
// until the control plane's podcidr controller assigns it; then the CNI
// network (a real network.Manager) uses the assigned range. An agent
// given another range by hand (--pod-cidr) stops with a clear error.
func TestAgentWaitsForAssignedPodCIDR(t *testing.T) {
	cp, nc := startWithNodeAuthorizer(t, 1, "pw1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cp.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	storeClusterNetwork(t, cp, clusternet.Config{ClusterCIDR: "10.248.0.0/16", NodeCIDRMaskSize: 24})
	admin := cp.MustClient(t)

	dir := t.TempDir()
	nc0 := network.DefaultConfig()
	nc0.ConfDir, nc0.CacheDir, nc0.IPAMDataDir = "", filepath.Join(dir, "cni-cache"), filepath.Join(dir, "cni-ipam")
	nc0.NetnsDir, nc0.IPMasq = filepath.Join(dir, "netns"), false
	nets, err := network.New(nc0)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	run := func(name string, c *client.Client, podCIDR string, pn agent.PodNetwork) (*agent.Agent, chan error) {
		cfg := agent.DefaultConfig()
		cfg.NodeName, cfg.Client, cfg.Runtime, cfg.PodCIDR, cfg.PodNetwork = name, c, idleRuntime{}, podCIDR, pn
		cfg.HeartbeatInterval = 500 * time.Millisecond
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		a, err := agent.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(runCtx) }()
		t.Cleanup(func() { stop(); <-done })
		return a, done
	}
	a, _ := run("pw1", nc, "", nets)
	select {
	case <-a.Registered():
	case <-ctx.Done():
		t.Fatal("agent did not register")
	}
	testutil.WaitFor(t, 10*time.Second, "the agent to log that it waits for its range", func() bool {
		return strings.Contains(logs.String(), "waiting for the control plane to assign this node's pod range")
	})
	if a.PodCIDR() != "" || nets.PodCIDR() != "" {
		t.Fatalf("range %q / network %q before any was assigned", a.PodCIDR(), nets.PodCIDR())
	}
	n, err := client.Get[*apiv1.Node](ctx, admin, "", "pw1")
	if err != nil || n.GetSpec().GetPodCIDR() != "" {
		t.Fatalf("registered Node: %v, podCIDR %q; want none yet", err, n.GetSpec().GetPodCIDR())
	}

	// The control plane's allocator (the leader loop, here run directly).
	parsed, _ := clusternet.Config{ClusterCIDR: "10.248.0.0/16", NodeCIDRMaskSize: 24}.Parse()
	alloc := podcidr.New(podcidr.Config{Kit: ctrlkit.DefaultConfig(admin),
		Network: func(context.Context) (clusternet.Network, error) { return parsed, nil }}, nil)
	actx, astop := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() { adone <- alloc.Run(actx) }()
	t.Cleanup(func() { astop(); <-adone })

	testutil.WaitFor(t, 15*time.Second, "the agent to take its assigned range", func() bool { return a.PodCIDR() != "" })
	n, err = client.Get[*apiv1.Node](ctx, admin, "", "pw1")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.GetSpec().GetPodCIDR(); got == "" || a.PodCIDR() != got || nets.PodCIDR() != got {
		t.Fatalf("Node spec.podCIDR %q, agent %q, CNI network %q: want all the same", got, a.PodCIDR(), nets.PodCIDR())
	}
	t.Logf("assigned %s; agent log:\n%s", n.GetSpec().GetPodCIDR(), logs.String())

	// --pod-cidr is only a check: another range than the assigned one stops the agent.
	_, done := run("pw2", nodeClientFor(t, cp, "pw2"), "10.248.200.0/24", nil)
	select {
	case err := <-done:
		if !errors.Is(err, agent.ErrPodCIDRMismatch) || !strings.Contains(err.Error(), "10.248.200.0/24") {
			t.Fatalf("agent with another --pod-cidr: %v, want ErrPodCIDRMismatch naming both ranges", err)
		}
		t.Logf("refused: %v", err)
		done <- err // for the cleanup
	case <-ctx.Done():
		t.Fatal("agent with a --pod-cidr other than its assigned range kept running")
	}
}
