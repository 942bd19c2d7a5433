package controlplane

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/consensus/consensustest"
	"github.com/skiffhq/skiff/integration/testutil"
)

// countingLoop records on which nodes it is running right now.
type countingLoop struct {
	node    string
	mu      *sync.Mutex
	running map[string]int
	starts  *atomic.Int64
	fail    func() error
}

func (c countingLoop) Name() string { return "counting" }

func (c countingLoop) Run(ctx context.Context) error {
	c.starts.Add(1)
	c.mu.Lock()
	c.running[c.node]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running[c.node]--
		c.mu.Unlock()
	}()
	if c.fail != nil {
		return c.fail()
	}
	<-ctx.Done()
	return nil
}

func fastLeaderConfig() LeaderConfig {
	cfg := DefaultLeaderConfig()
	cfg.Backoff = 10 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	return cfg
}

func TestLeaderLoopsFollowLeadership(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	var mu sync.Mutex
	running := map[string]int{}
	var starts atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, n := range c.Nodes {
		ll := NewLeaderLoops(fastLeaderConfig(), n.Store(), countingLoop{node: n.ID, mu: &mu, running: running, starts: &starts})
		wg.Add(1)
		go func() { defer wg.Done(); _ = ll.Run(ctx) }()
	}
	runningOn := func() (nodes []string) {
		mu.Lock()
		defer mu.Unlock()
		for n, k := range running {
			if k > 1 {
				t.Errorf("loop running %d times on %s", k, n)
			}
			if k > 0 {
				nodes = append(nodes, n)
			}
		}
		return nodes
	}
	l := c.MustLeader(t)
	testutil.WaitFor(t, 5*time.Second, "loop runs on the leader only", func() bool {
		on := runningOn()
		return len(on) == 1 && on[0] == l.ID
	})
	// The leader stops: its loop stops with it, and the new leader runs it.
	l.Stop()
	nl := c.MustLeader(t)
	testutil.WaitFor(t, 5*time.Second, "loop moves to the new leader", func() bool {
		on := runningOn()
		return len(on) == 1 && on[0] == nl.ID
	})
}

func TestFailingLoopGivesUpLeadership(t *testing.T) {
	c := consensustest.Start(t, 3, nil)
	first := c.MustLeader(t)
	var mu sync.Mutex
	running := map[string]int{}
	var starts atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// Only the first leader's loop is broken; elsewhere it works.
	for _, n := range c.Nodes {
		loop := countingLoop{node: n.ID, mu: &mu, running: running, starts: &starts}
		if n == first {
			loop.fail = func() error { return errors.New("disk full") }
		}
		ll := NewLeaderLoops(fastLeaderConfig(), n.Store(), loop)
		wg.Add(1)
		go func() { defer wg.Done(); _ = ll.Run(ctx) }()
	}
	testutil.WaitFor(t, 15*time.Second, "leadership moves away from the failing node", func() bool {
		l, err := c.WaitLeader(time.Second)
		return err == nil && l != first
	})
}

type fakeLeadership struct {
	ch        chan bool
	transfers atomic.Int64
}

func (f *fakeLeadership) LeaderCh() <-chan bool { return f.ch }
func (f *fakeLeadership) TransferLeadership() error {
	f.transfers.Add(1)
	return nil
}

type panicLoop struct{ runs *atomic.Int64 }

func (p panicLoop) Name() string { return "panicky" }
func (p panicLoop) Run(context.Context) error {
	p.runs.Add(1)
	panic("bad object")
}

func TestPanickingLoopIsRestartedThenStepsDown(t *testing.T) {
	f := &fakeLeadership{ch: make(chan bool, 1)}
	var runs atomic.Int64
	cfg := fastLeaderConfig()
	cfg.MaxFailures = 3
	ll := NewLeaderLoops(cfg, f, panicLoop{&runs})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ll.Run(ctx) }()
	f.ch <- true
	testutil.WaitFor(t, 5*time.Second, "step-down after 3 panics", func() bool { return f.transfers.Load() == 1 })
	if runs.Load() != 3 {
		t.Fatalf("loop ran %d times, want 3", runs.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
