package membership_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/skiffhq/skiff/agent/gossip"
	"github.com/skiffhq/skiff/agent/gossip/gossiptest"
	"github.com/skiffhq/skiff/controlplane/controllers/nodelifecycle"
	"github.com/skiffhq/skiff/integration/cptest"
	"github.com/skiffhq/skiff/integration/hollow"
	"github.com/skiffhq/skiff/integration/testutil"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// notReadyBound is the goal from a worker's death to its Node NotReady.
const notReadyBound = 3 * time.Second

func readyStatus(n *apiv1.Node) (string, string) {
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus(), c.GetMessage()
		}
	}
	return "", ""
}

// A worker whose gossip member dies goes Ready=Unknown within 3 s, long
// before the heartbeat grace (30 s here, so only gossip can explain it),
// and its pods are evicted as for a silent node; the other workers stay
// Ready, among them one cut off from the leader's member alone.
func TestGossipDeadNodeGoesNotReadyAndPodsEvicted(t *testing.T) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cuts := map[string]*gossiptest.Dropper{"control-0": {}, "hollow-2": {}}
	member := func(name string, host int, meta gossip.Meta) *gossip.Gossip {
		ip := fmt.Sprintf("127.0.0.%d", host)
		meta.Node, meta.IP = name, ip
		cfg := gossip.Config{Name: name, BindAddr: ip, Key: key, Meta: meta, Logger: quiet}
		if d := cuts[name]; d != nil {
			cfg.WrapTransport = d.Wrap
		}
		g, err := gossip.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Shutdown() })
		return g
	}
	// The control plane's member (what the leader's control node runs).
	control := member("control-0", 40, gossip.Meta{Role: gossip.RoleControl, APIAddress: "127.0.0.40:7443"})
	workers := map[string]*gossip.Gossip{}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("hollow-%d", i)
		workers[name] = member(name, 41+i, gossip.Meta{Role: gossip.RoleWorker})
		if _, err := workers[name].Join(control.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "4 members alive at the control member", func() bool {
		alive := 0
		for _, m := range control.Members() {
			if m.State == gossip.StateAlive {
				alive++
			}
		}
		return alive == 4
	})

	cfg := nodelifecycle.DefaultConfig()
	cfg.GracePeriod, cfg.MonitorPeriod, cfg.Members = 30*time.Second, 100*time.Millisecond, control
	c := cptest.Start(t, cptest.Options{ControlNodes: 1, HollowNodes: 3, Loops: []string{"scheduler", "nodelifecycle"},
		Configs:    map[string]any{"nodelifecycle": cfg},
		TuneHollow: func(h *hollow.Config) { h.HeartbeatPeriod = 300 * time.Millisecond }})
	cl := c.Client(t)
	ctx := context.Background()
	victim := "hollow-1"
	for i := 0; i < 3; i++ {
		p := &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: "default"},
			Spec: &apiv1.PodSpec{NodeName: victim, Containers: []*apiv1.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := client.Create(ctx, cl, p); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "3 pods running on "+victim, func() bool {
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default"})
		if err != nil || len(pods) != 3 {
			return false
		}
		for _, p := range pods {
			if p.GetStatus().GetPhase() != "Running" {
				return false
			}
		}
		return true
	})

	// hollow-2 is cut off from the leader's member alone (both ways); the
	// others still reach it, so it must stay alive and Ready.
	cuts["control-0"].Block(workers["hollow-2"].Addr())
	cuts["hollow-2"].Block(control.Addr())
	aliveSince, _ := control.Member("hollow-2")
	testutil.WaitFor(t, 10*time.Second, "the leader's member to try hollow-2 directly", func() bool { return cuts["control-0"].Dropped() >= 10 })

	// The machine dies: heartbeats and gossip stop together.
	killed := time.Now()
	c.Pool.Node(victim).Stop()
	if err := workers[victim].Shutdown(); err != nil {
		t.Fatal(err)
	}
	var message string
	testutil.WaitFor(t, 2*notReadyBound, victim+" Ready=Unknown", func() bool {
		n, err := client.Get[*apiv1.Node](ctx, cl, "", victim)
		if err != nil {
			return false
		}
		var st string
		st, message = readyStatus(n)
		return st == "Unknown"
	})
	notReady := time.Since(killed)
	t.Logf("%s NotReady %.2f s after its death (%q)", victim, notReady.Seconds(), message)
	if notReady > notReadyBound {
		t.Errorf("NotReady after %.2f s, bound %v", notReady.Seconds(), notReadyBound)
	}
	testutil.WaitFor(t, 10*time.Second, "pods evicted from "+victim, func() bool {
		pods, _, err := client.List[*apiv1.Pod](ctx, cl, client.ListOptions{Namespace: "default"})
		return err == nil && len(pods) == 0
	})
	t.Logf("%s's pods evicted %.2f s after its death", victim, time.Since(killed).Seconds())
	for _, name := range []string{"hollow-0", "hollow-2"} {
		n, err := client.Get[*apiv1.Node](ctx, cl, "", name)
		if st, _ := readyStatus(n); err != nil || st != "True" || len(n.GetSpec().GetTaints()) != 0 {
			t.Errorf("live node %s changed: %v %v", name, err, n)
		}
	}
	if m, _ := control.Member("hollow-2"); m.State != gossip.StateAlive || !m.Since.Equal(aliveSince.Since) {
		t.Errorf("hollow-2, cut off from the leader's member only, is %s since %v (alive since %v)", m.State, m.Since, aliveSince.Since)
	}
	t.Logf("hollow-2 cut off from the leader's member (%d packets/dials dropped): alive and Ready throughout", cuts["control-0"].Dropped())

	// Back: the node rejoins gossip and heartbeats, and is Ready again.
	workers[victim] = member(victim, 42, gossip.Meta{Role: gossip.RoleWorker})
	if _, err := workers[victim].Join(control.Addr()); err != nil {
		t.Fatal(err)
	}
	c.Pool.Node(victim).Resume()
	testutil.WaitFor(t, 10*time.Second, victim+" Ready again without taint", func() bool {
		n, err := client.Get[*apiv1.Node](ctx, cl, "", victim)
		st, _ := readyStatus(n)
		return err == nil && st == "True" && len(n.GetSpec().GetTaints()) == 0
	})
}
