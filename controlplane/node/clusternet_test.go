package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/integration/testutil"
)

// ctl init's --cluster-cidr and --node-cidr-mask-size reach the store
// and, from there, the leader loops (the podcidr controller reads them
// through LoopDeps.ClusterNetwork); unusable ones are refused before
// anything is created.
func TestInitStoresClusterNetwork(t *testing.T) {
	dir := t.TempDir()
	bad, _ := testConfig(t, filepath.Join(dir, "bad"), "c0")
	bad.ClusterNetwork = clusternet.Config{ClusterCIDR: "10.250.0.0/16", NodeCIDRMaskSize: 8}
	err := Init(context.Background(), bad)
	if !errors.Is(err, clusternet.ErrConfig) || !strings.Contains(err.Error(), "--node-cidr-mask-size 8") {
		t.Fatalf("init with a /8 node size in a /16: %v, want a clusternet.ErrConfig naming the flag", err)
	}
	if _, err := os.Stat(filepath.Join(bad.DataDir, "node.json")); !os.IsNotExist(err) {
		t.Fatalf("a refused init left node.json (%v)", err)
	}

	cfg, _ := testConfig(t, filepath.Join(dir, "c1"), "c1")
	cfg.ClusterNetwork = clusternet.Config{ClusterCIDR: "10.250.0.0/16", NodeCIDRMaskSize: 26}
	var mu sync.Mutex
	var deps *LoopDeps
	cfg.Loops = func(d LoopDeps) ([]controlplane.Loop, error) {
		mu.Lock()
		defer mu.Unlock()
		deps = &d
		return nil, nil
	}
	runInBackground(t, func(ctx context.Context) error { return Init(ctx, cfg) })
	var d *LoopDeps
	testutil.WaitFor(t, 30*time.Second, "the leader loops to start", func() bool {
		mu.Lock()
		defer mu.Unlock()
		d = deps
		return d != nil
	})
	// The first read that succeeds gives the configured network: the loops
	// start before init's own write of the settings, and a read that found
	// none then would have allocated from the defaults for the cluster's life.
	var got clusternet.Network
	testutil.WaitFor(t, 30*time.Second, "a read of the cluster network (the store has a leader)", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		got, err = d.ClusterNetwork(ctx)
		return err == nil || errors.Is(err, clusternet.ErrConfig)
	})
	if err != nil || got.Cluster.String() != "10.250.0.0/16" {
		t.Fatalf("the leader loops' first read of the cluster network: %s, %v; want 10.250.0.0/16", got.Cluster, err)
	}
	if got.NodeBits != 26 || got.Size() != 1024 {
		t.Fatalf("stored network %s in /%d (%d ranges), want 10.250.0.0/16 in /26 (1024)", got.Cluster, got.NodeBits, got.Size())
	}
}
