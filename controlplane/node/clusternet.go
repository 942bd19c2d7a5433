package node

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/clusternet"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// clusterNetwork is cfg's pod network settings, defaults filled, checked.
func (c *Config) clusterNetwork() (clusternet.Network, error) {
	n, def := c.ClusterNetwork, clusternet.Default()
	if n.ClusterCIDR == "" {
		n.ClusterCIDR = def.ClusterCIDR
	}
	if n.NodeCIDRMaskSize == 0 {
		n.NodeCIDRMaskSize = def.NodeCIDRMaskSize
	}
	net, err := n.Parse()
	if err != nil {
		return net, fmt.Errorf("--cluster-cidr %s --node-cidr-mask-size %d: %w", n.ClusterCIDR, n.NodeCIDRMaskSize, err)
	}
	return net, nil
}

// storeClusterNetwork writes the new cluster's pod network settings
// unless the store holds some (a first run that stopped after writing
// them): they never change once Nodes have ranges from them.
func storeClusterNetwork(ctx context.Context, s kv, cfg Config) error {
	net, err := cfg.clusterNetwork()
	if err != nil {
		return err
	}
	cur, _, err := s.Get(ctx, []byte(clusternet.StoreKey))
	if err != nil {
		return err
	}
	if cur != nil {
		return nil
	}
	b, err := net.Config().Marshal()
	if err != nil {
		return err
	}
	_, err = s.Put(ctx, &storepb.PutRequest{Key: []byte(clusternet.StoreKey), Value: b})
	return err
}

// loadClusterNetwork reads the stored settings (clusternet.Default when
// the cluster has none).
func loadClusterNetwork(ctx context.Context, s kv) (clusternet.Network, error) {
	return clusternet.Load(ctx, s)
}

// leaderClusterNetwork is what the leader's loops allocate pod ranges
// from. On a new cluster the first leader (the init node) starts its loops
// before init's own write of the settings lands, and reading then would
// give the defaults instead of --cluster-cidr: so the leader writes them
// first, as init does (only when the store holds none, same value).
func (c *Control) leaderClusterNetwork(ctx context.Context) (clusternet.Network, error) {
	if err := storeClusterNetwork(ctx, c.Store, c.cfg); err != nil {
		return clusternet.Network{}, err
	}
	return loadClusterNetwork(ctx, c.Store)
}
