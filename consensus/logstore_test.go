package consensus_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// TestWALLogStoreClusterSurvivesRestart runs three nodes on raft-wal:
// writes commit, every node restarts with its state, the data dir records
// the store, and reopening it with boltdb is refused with the way to
// migrate; reopening without naming a store keeps wal.
func TestWALLogStoreClusterSurvivesRestart(t *testing.T) {
	c := consensustest.Start(t, 3, func(cfg *consensus.Config) { cfg.LogStore = consensus.LogStoreWAL })
	l := c.MustLeader(t)
	for i := range 30 {
		put(t, l.Store(), fmt.Sprintf("/w/%02d", i), fmt.Sprint(i))
	}
	for _, n := range c.Nodes {
		if b, err := os.ReadFile(filepath.Join(n.Dir, "log-store")); err != nil || strings.TrimSpace(string(b)) != "wal" {
			t.Fatalf("%s: log-store record %q (%v), want wal", n.ID, b, err)
		}
		if _, err := os.Stat(filepath.Join(n.Dir, "raft.db")); err == nil {
			t.Fatalf("%s: a wal node wrote raft.db", n.ID)
		}
	}
	n := followers(c, l)[0]
	n.Stop()
	cfg := n.Config()
	cfg.LogStore = consensus.LogStoreBoltDB
	if s, err := consensus.Open(cfg); !errors.Is(err, consensus.ErrLogStoreMismatch) ||
		!strings.Contains(err.Error(), "--raft-log-store wal") || !strings.Contains(err.Error(), "migrate") {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("boltdb on a wal data dir: want ErrLogStoreMismatch naming --raft-log-store wal and how to migrate, got %v", err)
	}
	for _, n := range c.Nodes {
		n.Stop()
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	l = c.MustLeader(t)
	put(t, l.Store(), "/w/after", "x")
	for _, n := range c.Running() {
		resp, err := n.Store().Range(ctxT(t), &storepb.RangeRequest{Key: []byte("/w/"), Prefix: true})
		if err != nil || len(resp.Kvs) != 31 {
			t.Fatalf("%s after restart on wal: %d keys (%v), want 31", n.ID, len(resp.GetKvs()), err)
		}
	}
}

// TestBoltDataDirRefusesWAL: a data dir written by boltdb (also one from
// before the log-store record) is refused with wal, and a bad value is
// refused naming both choices.
func TestBoltDataDirRefusesWAL(t *testing.T) {
	c := consensustest.Start(t, 1, nil)
	n := c.Nodes[0]
	put(t, n.Store(), "/k", "v")
	n.Stop()
	// A data dir from before the record: only raft.db says what it is.
	if err := os.Remove(filepath.Join(n.Dir, "log-store")); err != nil {
		t.Fatal(err)
	}
	cfg := n.Config()
	cfg.LogStore = consensus.LogStoreWAL
	if s, err := consensus.Open(cfg); !errors.Is(err, consensus.ErrLogStoreMismatch) || !strings.Contains(err.Error(), "--raft-log-store boltdb") {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("wal on a boltdb data dir: got %v", err)
	}
	cfg.LogStore = "rocksdb"
	if _, err := consensus.Open(cfg); !errors.Is(err, consensus.ErrInvalid) || !strings.Contains(err.Error(), `"boltdb" or "wal"`) {
		t.Fatalf("unknown log store: got %v", err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	c.MustLeader(t)
	if got := get(t, n.Store(), "/k"); got != "v" {
		t.Fatalf("after reopening: %q", got)
	}
}
