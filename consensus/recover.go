package consensus

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// RecoverCluster rebuilds a one-voter cluster from this node's data after
// quorum is lost for good. It keeps every entry the node has (raft replays
// its whole log into a snapshot) and rewrites the configuration to this
// node alone. Run it with the node stopped, then Open the node normally;
// other control nodes rejoin it with fresh data directories.
//
// It is unsafe while any other member of the old cluster still runs: two
// clusters would then accept writes.
func RecoverCluster(cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	log := cfg.Logger.With("node", cfg.ID)
	logStore, snaps, err := openRaftStorage(cfg, log)
	if err != nil {
		return err
	}
	defer logStore.Close()
	has, err := raft.HasExistingState(logStore, logStore, snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	if !has {
		return fmt.Errorf("%w: %s holds no raft state to recover from", ErrInvalid, cfg.DataDir)
	}
	addr := cfg.AdvertiseAddr
	if addr == "" {
		addr = cfg.BindAddr
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(addr))
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(addr)}}}
	if err := raft.RecoverCluster(raftConfig(cfg, log), newFSM(cfg.WatchHistory), logStore, logStore, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover cluster: %w", err)
	}
	log.Warn("recovered a one-node cluster from local data; other nodes must rejoin with fresh data dirs", "address", addr)
	return nil
}
