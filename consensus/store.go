package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/proto/codec"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// logCacheEntries is how many recent log entries stay in memory.
const logCacheEntries = 1024

// Store is one control node's replicated key/value store.
type Store struct {
	cfg  Config
	log  *slog.Logger
	raft *raft.Raft
	// raftRef is raft for the peer guard, which runs on connections that
	// arrive while Open is still starting raft.
	raftRef  atomic.Pointer[raft.Raft]
	guard    *peerGuard
	fsm      *fsm
	mux      *mux
	logStore raftLogStore
	// stable is logStore as raft's stable store, closed before logStore.
	stable    *closingStable
	transport *raft.NetworkTransport
	rpc       *grpc.Server
	peers     *peerPool
	metrics   *metrics
	reads     *readIndexBatcher
	health    *peerHealth
	leader    *leaderState
	// leaderSeen signals changes of the leader this node knows.
	leaderSeen *leaderChange
	quorum     quorumCheck

	stop     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

// Open starts (or resumes) a control node's store. With cfg.Bootstrap and
// an empty DataDir it forms a new one-node cluster; otherwise it waits to be
// added by the leader or resumes from its own data.
func Open(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s := &Store{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), stop: make(chan struct{})}
	s.fsm = newFSM(cfg.WatchHistory)
	s.health = newPeerHealth()
	s.leader = newLeaderState()
	s.leaderSeen = newLeaderChange()
	s.metrics = newMetrics(cfg.Registerer, s)

	logStore, snaps, err := openRaftStorage(cfg, s.log)
	if err != nil {
		return nil, err
	}
	s.logStore = logStore
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		_ = logStore.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.BindAddr, err)
	}
	s.guard = newPeerGuard(cfg, &s.raftRef, s.log)
	s.mux, err = newMux(ln, cfg.AdvertiseAddr, cfg.ServerTLS, cfg.ClientTLS, s.guard, cfg.Fault, s.log)
	if err != nil {
		_ = ln.Close()
		_ = logStore.Close()
		return nil, err
	}
	s.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftLayer{s.mux},
		MaxPool: 5,
		// Pipelined replication: safeTransport keeps raft's pipeline from
		// parking a follower for good (hashicorp/raft#612; pipeline.go).
		MaxRPCsInFlight: cfg.maxRPCsInFlight(),
		Timeout:         5 * time.Second,
		Logger:          newHCLogger("raft-net", s.log),
	})
	s.peers = newPeerPool(s.mux)
	s.rpc = grpc.NewServer(grpc.Creds(handshakenCreds{}))
	registerServices(s.rpc, s)

	rc := raftConfig(cfg, s.log)
	hasState, err := raft.HasExistingState(logStore, logStore, snaps)
	if err != nil {
		s.closeTransport()
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}
	// The cache serves replication's reads of recent entries from memory
	// instead of a bbolt read transaction per entry.
	logs, err := raft.NewLogCache(logCacheEntries, logStore)
	if err != nil {
		s.closeTransport()
		return nil, fmt.Errorf("log cache: %w", err)
	}
	s.stable = newClosingStable(logStore)
	r, err := raft.NewRaft(rc, s.fsm, logs, s.stable, snaps, safeTransport{s.transport})
	if err != nil {
		s.closeTransport()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	s.raftRef.Store(r)
	s.reads = newReadIndexBatcher(s)
	// Serve the internal services only now: their handlers use s.raft (a
	// forwarded write reaching a node still opening read it unset, a data
	// race and a nil dereference). Connections made meanwhile wait in the
	// mux's accept queue.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.rpc.Serve(rpcListener{s.mux}); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("internal gRPC server stopped", "err", err)
		}
	}()
	if cfg.Bootstrap && !hasState {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: s.transport.LocalAddr(),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = s.Close()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	s.startBackground()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.guard.watchMembership(s.stop)
	}()
	return s, nil
}

func raftConfig(cfg Config, log *slog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// Batch queued applies into one log write and one fsync.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = cfg.maxAppendEntries()
	rc.Logger = newHCLogger("raft", log)
	return rc
}

// newHCLogger adapts raft's hclog output into slog, keeping only warnings
// and errors: raft's info lines are per-heartbeat noise.
func newHCLogger(name string, log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, Output: slogWriter{log.With("component", name)}, DisableTime: true})
}

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "[ERROR]") {
		w.log.Error(msg)
	} else {
		w.log.Warn(msg)
	}
	return len(p), nil
}

var _ io.Writer = slogWriter{}

// ID is this node's Raft server ID.
func (s *Store) ID() string { return s.cfg.ID }

// Addr is the address peers reach this node's consensus port at.
func (s *Store) Addr() string { return string(s.transport.LocalAddr()) }

// IsLeader reports whether this node is the Raft leader right now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's ID and address, empty when none is known.
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderCh delivers true when this node gains leadership and false when it
// loses it (a coalescing channel: only the latest state is guaranteed).
func (s *Store) LeaderCh() <-chan bool { return s.leader.subscribe() }

// Revision is the revision this node has applied (a stale read).
func (s *Store) Revision() int64 { return s.fsm.currentRevision() }

// AppliedIndex is the last Raft index this node's FSM applied.
func (s *Store) AppliedIndex() uint64 { return s.fsm.applied.get() }

// Close stops the node. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	close(s.stop)
	var errs []error
	if s.raft != nil {
		start := time.Now()
		errs = append(errs, s.raft.Shutdown().Error())
		// Shutdown waits for every raft goroutine; one stuck in a send
		// (hashicorp/raft#612 was such) shows here first.
		if took := time.Since(start); took > time.Second {
			s.log.Warn("raft shutdown was slow", "took", took.Round(time.Millisecond))
		}
	}
	s.rpc.Stop()
	s.peers.close()
	s.closeTransport()
	s.wg.Wait()
	if s.stable != nil {
		s.stable.close()
	}
	errs = append(errs, s.logStore.Close())
	s.closeErr = errors.Join(errs...)
	return s.closeErr
}

func (s *Store) closeTransport() {
	_ = s.transport.Close()
	_ = s.mux.close()
}

func (s *Store) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// withDefaultTimeout gives a context the store's apply timeout when it has
// no deadline of its own.
func (s *Store) withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.ApplyTimeout)
}

func encodeCommand(t storepb.Command_Type, payload proto.Message) ([]byte, error) {
	var p []byte
	if payload != nil {
		var err error
		if p, err = codec.Marshal(payload); err != nil {
			return nil, fmt.Errorf("encode %s payload: %w", t, err)
		}
	}
	p, enc := compressPayload(p)
	return codec.Marshal(&storepb.Command{Version: CommandVersion, Type: t, Payload: p, Encoding: enc})
}
