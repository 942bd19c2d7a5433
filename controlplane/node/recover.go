package node

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/pki"
)

// Recover rebuilds a one-node cluster from this control node's data after
// quorum was lost for good, then runs the node until ctx ends. Every entry
// this node has is kept. The other control nodes must not run with their
// old data (two clusters would accept writes): they rejoin with fresh data
// dirs and a new control token.
func Recover(ctx context.Context, cfg Config) error {
	if err := cfg.fill(); err != nil {
		return err
	}
	st, err := LoadState(cfg.DataDir)
	if err != nil {
		return err
	}
	if st.Role != RoleControl {
		return fmt.Errorf("%s holds worker node %q: only control nodes hold the store", cfg.DataDir, st.Name)
	}
	bundle, renewer, err := controlTLS(cfg, st, nil, nil)
	if err != nil {
		return err
	}
	if err := consensus.RecoverCluster(storeConfig(cfg, st, bundle, renewer, &pki.DenyList{}, false)); err != nil {
		return fmt.Errorf("recover %s: %w (is the node still running? stop it first)", cfg.DataDir, err)
	}
	fmt.Fprintf(cfg.Out, "recovered: %s is now a one-node cluster with all of its data.\n"+
		"Rejoin the other control nodes with EMPTY data dirs: `ctl token create --role control`, then `ctl join --control --token … %s`.\n",
		st.Name, st.APIAddress())
	return resume(ctx, cfg, st)
}
